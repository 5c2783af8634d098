"""``divot caption VIDEO --model M``: caption a video; the caption goes to stdout."""

from __future__ import annotations

import argparse
from pathlib import Path

from divot.commands.console import out
from divot.commands.model_options import add_comprehension_arguments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("video", type=Path, help="video file (mp4, gif, webm, ...)")
    parser.add_argument("--instruction", default=None,
                        help="ask this instead of using the caption prompt, e.g. 'Describe the video.' "
                             "(for instruction-tuned models)")
    add_comprehension_arguments(parser)


def run(args) -> int:
    from divot.commands.model_options import check_model, check_video, decoding_options, load_model

    check_video(args.video)
    check_model(args.model)
    options = decoding_options(args)
    model = load_model(args)
    if args.instruction is not None:
        chat = model.chat(**options)
        chat.set_video(args.video, max_clips=args.max_clips, progress=True)
        out(chat.ask(args.instruction))
        return 0
    seed = options.pop("seed")
    prompt = model.builder.caption_prompt(model.tokens(args.video, max_clips=args.max_clips, progress=True))
    out(model.generate_text(prompt, seed=seed, **options))
    return 0
