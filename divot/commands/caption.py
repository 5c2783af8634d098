"""``divot caption VIDEO --model M``: caption a video; the caption goes to stdout."""

from __future__ import annotations

import argparse
from pathlib import Path

from divot.commands.model_options import add_decoding_arguments, add_model_arguments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("video", type=Path, help="video file (mp4, gif, webm, ...)")
    parser.add_argument("--instruction", default=None,
                        help="ask this instead of using the caption prompt, e.g. 'Describe the video.' "
                             "(for instruction-tuned models)")
    parser.add_argument("--max-clips", type=int, default=None, help="at most this many 2-second clips (20)")
    add_model_arguments(parser)
    add_decoding_arguments(parser)


def run(args) -> int:
    from divot.commands.model_options import check_model, check_video, decoding_options, load_model

    check_video(args.video)
    check_model(args.model)
    options = decoding_options(args)
    model = load_model(args)
    if args.instruction is not None:
        chat = model.chat(**options)
        chat.set_video(args.video, max_clips=args.max_clips, progress=True)
        print(chat.ask(args.instruction))
        return 0
    seed = options.pop("seed")
    prompt = model.builder.caption_prompt(model.tokens(args.video, max_clips=args.max_clips, progress=True))
    print(model.generate_text(prompt, seed=seed, **options))
    return 0
