"""Where generated motion gets lost: in the LLM's generated tokens, or in the de-tokenizer's render of them.

    python benchmarks/generation_motion.py --model divot/assets/shapes-tiny \
        --tokens runs/shapes_model_sh1/train_tokens --clips runs/shapes_model_sh1/data/train/metadata.jsonl \
        --num-probe 70 --num-render 24 --settings top:3 top:6 mean:3 sample:3 \
        --out benchmarks/results/generation_motion_bundled.json

1. Tokens: a linear probe of motion is fitted on the cached tokens of real training clips,
   then reads the motion of the tokens the LLM generates (GMM ``mode`` "top", "sample", "mean") for
   ``--num-probe`` prompts cycling through every motion (training colour-shape pairs).
2. Renders: for each ``mode:guidance`` setting, ``--num-render`` direction prompts (left, right, up, down in
   turn) are generated and rendered (DPM-Solver++-20), and the shapes world's pixel measurements say whether
   the clip shows the prompt's colour and moves the asked way.
If (1) is near 1 and (2) is not, the de-tokenizer is what loses the motion.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
from pathlib import Path

import numpy as np
import torch

from divot.chat import Divot
from divot.data.datasets import read_annotations
from divot.data.shapes.world import MOTION_DIRECTIONS, MOTIONS
from divot.data.token_cache.reader import TokenCache
from divot.eval.probe import fit_probe
from divot.eval.shapes_demo import generation_prompts, generation_scores
from divot.hub import atomic_write_text
from divot.llm.sequences import GENERATION_TEMPLATES

logger = logging.getLogger("benchmarks.generation_motion")


def motion_probe(cache: TokenCache, metadata: Path):
    """A logistic-regression motion probe (of the first object) on the first clip's tokens of every cached clip."""
    x, y = [], []
    for item in read_annotations(metadata):
        if item.labels and item.video_id in cache:
            x.append(cache[item.video_id][0].flatten().numpy())
            y.append(item.labels["motion"])
    if not x:
        raise ValueError(f"none of the clips of {metadata} are in the token cache")
    return fit_probe(np.stack(x), y), len(y)


def generated_token_motion(model: Divot, clf, items: list[dict], mode: str) -> dict:
    """The probe's reading of the motion of the LLM's generated tokens: overall and per motion."""
    hits: dict[str, list[bool]] = {}
    for i, p in enumerate(items):
        sample = model.builder.generation_prompt(p["prompt"], template=GENERATION_TEMPLATES[0])
        out = model.llm.generate_video(sample, num_clips=1, mode=mode, generator=torch.Generator().manual_seed(i))
        pred = clf.predict(out.tokens[0].flatten()[None].float().numpy())[0]
        hits.setdefault(p["motion"], []).append(bool(pred == p["motion"]))
    flat = [h for v in hits.values() for h in v]
    return {"accuracy": sum(flat) / len(flat), "by_motion": {k: sum(v) / len(v) for k, v in hits.items()}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="a model directory or bundled name")
    p.add_argument("--tokens", required=True, help="token cache of training clips (same tokenizer as the model)")
    p.add_argument("--clips", required=True, type=Path, help="the training clips' metadata.jsonl")
    p.add_argument("--num-probe", type=int, default=70)
    p.add_argument("--num-render", type=int, default=24)
    p.add_argument("--settings", nargs="+", default=["top:3"], help="mode:guidance pairs to render")
    p.add_argument("--seed", type=int, default=5)
    p.add_argument("--out", required=True, type=Path)
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    model = Divot.from_pretrained(args.model)
    cache = TokenCache(args.tokens, expect_tokenizer=model.tokenizer)
    clf, n_fit = motion_probe(cache, args.clips)
    result: dict = {"settings": {k: str(v) for k, v in vars(args).items()}, "probe_clips": n_fit, "tokens": {},
                    "renders": {}}
    probe_items = generation_prompts(args.num_probe, args.seed, MOTIONS)
    for mode in ("top", "sample", "mean"):
        result["tokens"][mode] = generated_token_motion(model, clf, probe_items, mode)
        logger.info("generated tokens, mode %s: probe motion %.2f", mode, result["tokens"][mode]["accuracy"])
    render_items = generation_prompts(args.num_render, args.seed, tuple(MOTION_DIRECTIONS))
    for setting in args.settings:
        mode, guidance = setting.split(":")
        with tempfile.TemporaryDirectory() as tmp:
            scores = generation_scores(model, render_items, Path(tmp), seed=100, guidance_scale=float(guidance),
                                       mode=mode, progress=False)
        by: dict[str, list[bool]] = {}
        for row in scores["rows"]:
            by.setdefault(row["prompt"].split(" ", 3)[3], []).append(row["correct"]["motion"])
        result["renders"][setting] = {
            "direction": float(np.mean([r["correct"]["motion"] for r in scores["rows"]])),
            "colour": float(np.mean([r["correct"]["colour"] for r in scores["rows"]])),
            "by_direction": {k: sum(v) / len(v) for k, v in by.items()},
        }
        logger.info("renders %s: direction %.2f colour %.2f %s", setting, result["renders"][setting]["direction"],
                    result["renders"][setting]["colour"], result["renders"][setting]["by_direction"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out, json.dumps(result, indent=1) + "\n")
    logger.info("wrote %s", args.out)


if __name__ == "__main__":
    main()
