"""``divot generate PROMPT --model M --out x.mp4|x.gif``: text -> LLM -> tokens -> de-tokenizer -> a video file."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from divot.commands.console import out
from divot.commands.model_options import add_model_arguments, add_rendering_arguments

logger = logging.getLogger(__name__)

OUT_SUFFIXES = (".mp4", ".gif")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("prompt", help="what to show, e.g. 'a red circle moves left'")
    parser.add_argument("--out", required=True, type=Path, help="output video: .mp4 or .gif")
    parser.add_argument("--seed", type=int, default=0, help="seed of the GMM sampling and the diffusion noise")
    add_rendering_arguments(parser)
    parser.add_argument("--num-clips", type=int, default=1, help="2-second clips, one after another (default 1)")
    add_model_arguments(parser)


def run(args) -> int:
    from divot.commands.model_options import check_model, load_model, rendering_options

    if args.out.suffix.lower() not in OUT_SUFFIXES:
        raise ValueError(f"--out {args.out} must end in {' or '.join(OUT_SUFFIXES)}")
    rendering = rendering_options(args)
    if args.num_clips < 1:
        raise ValueError(f"--num-clips must be >= 1, got {args.num_clips}")
    if not args.prompt.strip():
        raise ValueError("the prompt is empty")
    check_model(args.model)
    model = load_model(args)
    video = model.generate_video(args.prompt, num_clips=args.num_clips, seed=args.seed, progress=True, **rendering)
    path = video.save(args.out)
    logger.info("%d frames at %g fps -> %s", len(video), video.fps, path)
    out(path)
    return 0
