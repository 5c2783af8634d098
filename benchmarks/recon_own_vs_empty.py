"""Reconstructions from a clip's own tokens against an empty clip's, on held-out shapes-world clips.

    python benchmarks/recon_own_vs_empty.py --clips runs/shapes_model_pos/data/held_out/metadata.jsonl \
        --tokenizer divot/assets/shapes-tiny/tokenizer --detokenizer divot/assets/shapes-tiny/detokenizer \
        --num 64 --guidance 3.0 --out benchmarks/results/recon_own_vs_empty.json

Both renders start from the same initial noise (DPM-Solver++-20); the shapes world's pixel measurements
(colour, shape, centroid motion, mask IoU, PSNR beside the all-black baseline) are written as JSON, with the
motion agreement split by the clip's motion kind (``motion_by_kind``).
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import torch

from divot.data.datasets import ClipDataset, read_annotations
from divot.data.transforms import dense_frame_subset
from divot.diffusion.detokenizer import Detokenizer
from divot.eval.tokenizer_eval import clip_agreement, empty_clip_tokens
from divot.tokenizer.model import VideoTokenizer

logger = logging.getLogger("benchmarks.recon_own_vs_empty")


def scores(real: torch.Tensor, generated: torch.Tensor, motions: list[str]) -> dict:
    """Mean agreement over the clips, and the motion agreement per motion kind ({kind: [accuracy, n]})."""
    rows = [clip_agreement(r, g) for r, g in zip(real, generated, strict=True)]
    out = {k: sum(r[k] for r in rows) / len(rows) for k in rows[0]}
    kinds: dict[str, list[float]] = {}
    for row, kind in zip(rows, motions, strict=True):
        kinds.setdefault(kind, []).append(row["motion"])
    out["motion_by_kind"] = {k: [sum(v) / len(v), len(v)] for k, v in sorted(kinds.items())}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clips", required=True, help="a shapes-world metadata.jsonl (held-out split)")
    p.add_argument("--tokenizer", required=True)
    p.add_argument("--detokenizer", required=True)
    p.add_argument("--num", type=int, default=64)
    p.add_argument("--guidance", type=float, default=3.0)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    items = read_annotations(args.clips, None, None)[: args.num]
    tok = VideoTokenizer.from_pretrained(args.tokenizer).eval()
    detok = Detokenizer.from_pretrained(args.detokenizer).eval()
    data = ClipDataset(items, detok.config.frame_size, random_window=False)
    clips = [data[i] for i in range(len(items))]
    sparse = torch.stack([c["sparse"] for c in clips])
    dense = torch.stack([c["dense"] for c in clips])
    cfg = detok.config
    shape = (len(items), cfg.latent_channels, cfg.num_frames, cfg.latent_size, cfg.latent_size)
    x_T = torch.randn(shape, generator=torch.Generator().manual_seed(args.seed))
    kw = dict(num_steps=args.steps, sampler="dpmsolver++", guidance_scale=args.guidance, x_T=x_T)
    with torch.no_grad():
        tokens = tok(sparse).float()
        own = detok.decode(tokens, **kw)
        empty = detok.decode(empty_clip_tokens(tok, tokens.shape[0]), **kw)
    real = dense[:, dense_frame_subset(own.shape[1], dense.shape[1])]
    motions = [item.labels.get("motion", "?") for item in items]
    result = {"settings": vars(args), "own": scores(real, own, motions), "empty": scores(real, empty, motions)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    logger.info("%s", json.dumps(result))


if __name__ == "__main__":
    main()
