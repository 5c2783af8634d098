"""``divot generate PROMPT --model M --out x.mp4|x.gif``: text -> LLM -> tokens -> de-tokenizer -> a video file.

Settings not given on the command line (sampler, steps, guidance, rescale, eta, prompt format, how ``<vid>`` is
opened) come from the model directory's ``generation.json``, else the library defaults
(``divot.chat.generation_defaults``)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from divot.chat.generation_defaults import LIBRARY_DEFAULTS, OPEN_VIDEO, PROMPT_FORMATS
from divot.commands.console import out
from divot.commands.model_options import add_model_arguments, add_rendering_arguments

logger = logging.getLogger(__name__)

OUT_SUFFIXES = (".mp4", ".gif")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("prompt", help="what to show, e.g. 'a red circle moves left'")
    parser.add_argument("--out", required=True, type=Path, help="output video: .mp4 or .gif")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the text (--open-video sample), the GMM sampling and the diffusion noise")
    add_rendering_arguments(parser)
    parser.add_argument("--prompt-format", choices=PROMPT_FORMATS, default=None,
                        help="instruct: <s>[INST] {template} PROMPT [/INST] (instruction-tuned weights); pretrain: "
                             "<s> PROMPT (what Divot_pretrain was trained on) (default: the model's generation.json, "
                             f"else {LIBRARY_DEFAULTS.prompt_format})")
    parser.add_argument("--open-video", choices=OPEN_VIDEO, default=None,
                        help="force: append <vid> after the prompt; sample: sample text until the model opens <vid> "
                             "(the reference's loop; the text is logged) (default: the model's generation.json, "
                             f"else {LIBRARY_DEFAULTS.open_video})")
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
    video = model.generate_video(args.prompt, num_clips=args.num_clips, seed=args.seed, progress=True,
                                 prompt_format=args.prompt_format, open_video=args.open_video, **rendering)
    path = video.save(args.out)
    logger.info("%d frames at %g fps -> %s; settings: %s", len(video), video.fps, path,
                ", ".join(f"{k}={v!r}" for k, v in video.settings.items()))
    out(path)
    return 0
