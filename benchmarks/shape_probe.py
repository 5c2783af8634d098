"""How well a tokenizer's tokens carry shape to unseen colour-shape pairs: linear probes and their confusions.

    python benchmarks/shape_probe.py --tokenizer divot/assets/shapes-tiny/tokenizer \
        --data runs/shapes_model_pos/data --out benchmarks/results/shape_probe_bundled.json

A logistic-regression probe (``divot.eval.probe.linear_probe``) is fitted on the tokens of ``--num-train``
training clips and scored on held-out-pair clips (``held_out``) and on the next quarter of training clips
(``in_dist``), for shape, colour and motion of each clip's first object. The shape probe's most frequent
confusions (true -> predicted) are written too: on the shapes world they are the shapes that cover about the
same part of their box (triangle 0.50, diamond 0.50, cross 0.55).
"""

from __future__ import annotations

import argparse
import collections
import json
import logging
from pathlib import Path

import torch

from divot.data.datasets import ClipDataset, read_annotations
from divot.eval.probe import fit_probe, linear_probe
from divot.hub import atomic_write_text
from divot.tokenizer.model import VideoTokenizer

logger = logging.getLogger("benchmarks.shape_probe")
ATTRIBUTES = ("shape", "colour", "motion")


def clip_tokens(tokenizer: VideoTokenizer, metadata: Path, num: int) -> tuple[torch.Tensor, list[dict]]:
    """Tokens (n, q, d) of the first ``num`` labelled clips of a shapes-world split, and their labels."""
    items = [it for it in read_annotations(metadata) if it.labels][:num]
    if not items:
        raise ValueError(f"no labelled clips in {metadata}")
    data = ClipDataset(items, tokenizer.config.frame_size, random_window=False)
    samples = [data[i] for i in range(len(items))]
    kept = [i for i, s in enumerate(samples) if s is not None]
    sparse = torch.stack([samples[i]["sparse"] for i in kept])
    return tokenizer.encode(sparse), [items[i].labels for i in kept]


def confusions(true: list[str], predicted: list[str], top: int = 6) -> list[list]:
    """The ``top`` most frequent (true, predicted, count) errors."""
    errors = collections.Counter((t, p) for t, p in zip(true, predicted, strict=True) if t != p)
    return [[t, p, n] for (t, p), n in errors.most_common(top)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tokenizer", required=True, help="a tokenizer directory (save_pretrained)")
    p.add_argument("--data", required=True, type=Path, help="a folder with train/ and held_out/ shapes-world splits")
    p.add_argument("--num-train", type=int, default=800, help="training clips: 3/4 fit the probe, 1/4 test it")
    p.add_argument("--num-held-out", type=int, default=200)
    p.add_argument("--out", required=True, type=Path)
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    tok = VideoTokenizer.from_pretrained(args.tokenizer).eval()
    train_x, train_l = clip_tokens(tok, args.data / "train" / "metadata.jsonl", args.num_train)
    held_x, held_l = clip_tokens(tok, args.data / "held_out" / "metadata.jsonl", args.num_held_out)
    n_fit = len(train_x) * 3 // 4
    result: dict = {"settings": {k: str(v) for k, v in vars(args).items()}, "num_fit": n_fit,
                    "num_in_dist": len(train_x) - n_fit, "num_held_out": len(held_x)}
    for name in ATTRIBUTES:
        fit_y = [lab[name] for lab in train_l[:n_fit]]
        tests = {"held_out": (held_x, [lab[name] for lab in held_l]),
                 "in_dist": (train_x[n_fit:], [lab[name] for lab in train_l[n_fit:]])}
        clf = fit_probe(train_x[:n_fit], fit_y)
        result[name] = {split: linear_probe(train_x[:n_fit], fit_y, x, y, with_predictions=True, clf=clf)
                        for split, (x, y) in tests.items()}
        predictions = {split: scores.pop("predictions") for split, scores in result[name].items()}
        if name == "shape":
            result["shape_confusions"] = {split: confusions(y, predictions[split]) for split, (_, y) in tests.items()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out, json.dumps(result, indent=1) + "\n")
    for name in ATTRIBUTES:
        logger.info("%s probe: held-out %.3f, in distribution %.3f", name, result[name]["held_out"]["accuracy"],
                    result[name]["in_dist"]["accuracy"])
    logger.info("shape confusions (held-out): %s", result["shape_confusions"]["held_out"])
    logger.info("wrote %s", args.out)


if __name__ == "__main__":
    main()
