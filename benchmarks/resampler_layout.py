"""Can a Perceiver resampler pass on where the object is? (docs/experiments.md, 2026-12-01 "why the resampler drops position".)

    python benchmarks/resampler_layout.py --clips data/shapes/train/metadata.jsonl --stt-std 0.02
    python benchmarks/resampler_layout.py --clips data/shapes/train/metadata.jsonl --stt-std 1.0
    python benchmarks/resampler_layout.py --clips data/shapes/train/metadata.jsonl --reader input-table --table-std 1.0
    python benchmarks/resampler_layout.py --clips data/shapes/train/metadata.jsonl --reader linear

A random tiny tokenizer (its spatial-temporal position tables drawn at ``--stt-std``) is frozen up to the
resampler; a fresh resampler (``resampler``; ``input-table`` adds a learned table to its inputs) or a linear map
of all 80 inputs (``linear``) is trained with a linear head to give back the 5 sparse frames at 8 x 8 (object
pixels 5x), on the first 512 clips; the loss on the next 256 is reported (the mean frame scores about 0.34).
"""

from __future__ import annotations

import argparse
import json
import logging

import torch
import torch.nn.functional as F

from divot.data.datasets import ClipDataset, read_annotations
from divot.diffusion.objective import foreground_weights
from divot.nn.resampler import PerceiverResampler
from divot.tokenizer.model import VideoTokenizer

logger = logging.getLogger("benchmarks.resampler_layout")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clips", required=True, help="a shapes-world metadata.jsonl (768 clips are read)")
    p.add_argument("--reader", choices=["resampler", "input-table", "linear"], default="resampler")
    p.add_argument("--stt-std", type=float, default=0.02, help="init scale of the tokenizer's position tables")
    p.add_argument("--table-std", type=float, default=0.02, help="init scale of the input-table reader's table")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--steps", type=int, default=600)
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.manual_seed(0)
    items = read_annotations(args.clips, None, None)[:768]
    data = ClipDataset(items, 32, random_window=False)
    sparse = torch.stack([data[i]["sparse"] for i in range(len(items))])
    tok = VideoTokenizer.from_preset("tiny").eval()
    with torch.no_grad():
        tok.spatial_temporal.pos_embed_spatial.normal_(0, args.stt_std)
        tok.spatial_temporal.pos_embed_temporal.normal_(0, args.stt_std)
    inputs = {}
    tok.resampler.register_forward_hook(lambda m, i, o: inputs.__setitem__("x", i[0]))
    with torch.no_grad():
        tok(sparse)
    x = inputs["x"]  # (n, 80, 96): what the tokenizer's resampler reads
    n, s = x.shape[0], 8
    target = F.adaptive_avg_pool2d(sparse.flatten(0, 1), s).view(n, 5, 3, s, s)
    weight = foreground_weights(target.transpose(1, 2), 5.0, 0.2).transpose(1, 2)

    torch.manual_seed(1)
    rc = tok.config.resampler
    resampler = PerceiverResampler(dim=x.shape[-1], depth=rc.depth, num_heads=rc.num_heads, head_dim=rc.head_dim,
                                   num_queries=rc.num_queries, input_dim=x.shape[-1], output_dim=rc.output_dim)
    table = torch.nn.Parameter(torch.randn(x.shape[1], x.shape[2]) * args.table_std)
    if args.reader == "linear":
        head = torch.nn.Linear(x.shape[1] * x.shape[2], 5 * 3 * s * s)
        params = list(head.parameters())
    else:
        head = torch.nn.Linear(rc.num_queries * rc.output_dim, 5 * 3 * s * s)
        params = list(resampler.parameters()) + list(head.parameters())
        params += [table] if args.reader == "input-table" else []

    def read(batch):
        if args.reader == "linear":
            return head(batch.flatten(1)).view(-1, 5, 3, s, s)
        if args.reader == "input-table":
            batch = batch + table
        return head(resampler(batch).flatten(1)).view(-1, 5, 3, s, s)

    def loss(idx):
        return ((read(x[idx]) - target[idx]) ** 2 * weight[idx]).sum() / (weight[idx].sum() * 3)

    opt = torch.optim.AdamW(params, lr=args.lr)
    for _ in range(args.steps):
        value = loss(torch.randint(0, 512, (16,)))
        opt.zero_grad()
        value.backward()
        opt.step()
    with torch.no_grad():
        result = {"settings": vars(args), "test_layout_loss": loss(torch.arange(512, n)).item()}
    logger.info("%s", json.dumps(result))


if __name__ == "__main__":
    main()
