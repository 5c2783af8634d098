"""``divot generate PROMPT --model M --out x.mp4|x.gif``: text -> LLM -> tokens -> de-tokenizer -> a video file."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from divot.commands.model_options import add_model_arguments

logger = logging.getLogger(__name__)

OUT_SUFFIXES = (".mp4", ".gif")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("prompt", help="what to show, e.g. 'a red circle moves left'")
    parser.add_argument("--out", required=True, type=Path, help="output video: .mp4 or .gif")
    parser.add_argument("--seed", type=int, default=0, help="seed of the GMM sampling and the diffusion noise")
    parser.add_argument("--steps", type=int, default=20, help="de-tokenizer sampling steps (default 20)")
    parser.add_argument("--guidance", type=float, default=7.5, help="classifier-free guidance scale (1: off)")
    parser.add_argument("--rescale", type=float, default=0.7, help="guidance rescale (0: off)")
    parser.add_argument("--var-scale", type=float, default=None,
                        help="GMM variance scale when sampling tokens (default: the model's, 0.1)")
    parser.add_argument("--sampler", default="dpmsolver++",
                        help="dpmsolver++ (default), reference (the published DDIM), ddim, euler, unipc or ddpm")
    parser.add_argument("--mode", choices=["sample", "mean", "top"], default="sample",
                        help="how tokens come from the GMM (default: sample)")
    parser.add_argument("--num-clips", type=int, default=1, help="2-second clips, one after another (default 1)")
    add_model_arguments(parser)


def run(args) -> int:
    from divot.commands.model_options import check_model, load_model
    from divot.diffusion.detokenizer import SAMPLERS

    if args.out.suffix.lower() not in OUT_SUFFIXES:
        raise ValueError(f"--out {args.out} must end in {' or '.join(OUT_SUFFIXES)}")
    if args.sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {args.sampler!r}; choose from {list(SAMPLERS)}")
    if args.steps < 1 or args.num_clips < 1:
        raise ValueError(f"--steps and --num-clips must be >= 1, got {args.steps} and {args.num_clips}")
    if args.var_scale is not None and args.var_scale <= 0:
        raise ValueError(f"--var-scale must be > 0, got {args.var_scale}")
    if not args.prompt.strip():
        raise ValueError("the prompt is empty")
    check_model(args.model)
    model = load_model(args)
    video = model.generate_video(args.prompt, num_clips=args.num_clips, seed=args.seed, num_steps=args.steps,
                                 guidance_scale=args.guidance, guidance_rescale=args.rescale,
                                 var_scale=args.var_scale, sampler=args.sampler, mode=args.mode, progress=True)
    path = video.save(args.out)
    logger.info("%d frames at %g fps -> %s", len(video), video.fps, path)
    print(path)
    return 0
