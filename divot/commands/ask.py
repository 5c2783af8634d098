"""``divot ask VIDEO QUESTION --model M``: answer one question about a video; the answer goes to stdout."""

from __future__ import annotations

import argparse
from pathlib import Path

from divot.commands.console import out_stream
from divot.commands.model_options import add_comprehension_arguments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("video", type=Path, help="video file (mp4, gif, webm, ...)")
    parser.add_argument("question", help="the question, e.g. 'What colour is the object?'")
    add_comprehension_arguments(parser)


def run(args) -> int:
    from divot.commands.model_options import check_model, check_video, decoding_options, load_model

    check_video(args.video)
    check_model(args.model)
    options = decoding_options(args)
    if not args.question.strip():
        raise ValueError("the question is empty")
    model = load_model(args)
    seed = options.pop("seed")
    chat = model.chat(seed=seed, **options)
    chat.set_video(args.video, max_clips=args.max_clips, progress=True)
    out_stream(chat.ask(args.question, stream=True))  # printed as the tokens arrive
    return 0
