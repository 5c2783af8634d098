"""``divot story "INSTRUCTION" --model M --segments N --out DIR``: a story of N (text, clip) segments, saved as
``DIR/storyboard.html`` + ``segment_NN.gif`` / ``.mp4`` + ``story.json``; the texts are printed, one per line."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from divot.commands.console import out
from divot.commands.model_options import add_decoding_arguments, add_model_arguments, add_rendering_arguments

logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("instruction", help="what the story is about, e.g. 'Generate a story about a red circle.'")
    parser.add_argument("--out", required=True, type=Path, help="output folder (storyboard.html, one GIF/MP4 per "
                                                                "segment, story.json)")
    parser.add_argument("--segments", type=int, default=3, help="number of (text, clip) segments (default 3)")
    parser.add_argument("--formats", default="gif,mp4", help="video files per segment (default gif,mp4)")
    add_decoding_arguments(parser)  # --seed also fixes the clip tokens and the diffusion noise
    add_rendering_arguments(parser)
    add_model_arguments(parser)


def run(args) -> int:
    from divot.commands.model_options import check_model, decoding_options, load_model, rendering_options

    rendering = rendering_options(args)
    decoding = decoding_options(args)
    if args.segments < 1:
        raise ValueError(f"--segments must be >= 1, got {args.segments}")
    if not args.instruction.strip():
        raise ValueError("the instruction is empty")
    formats = tuple(f.strip().lower().lstrip(".") for f in args.formats.split(",") if f.strip())
    if not formats or any(f not in ("gif", "mp4", "webm") for f in formats):
        raise ValueError(f"--formats {args.formats!r}: use a comma list of gif, mp4, webm")
    if args.out.exists() and not args.out.is_dir():
        raise ValueError(f"--out {args.out} is a file, not a folder")
    check_model(args.model)
    model = load_model(args)
    story = model.tell_story(args.instruction, args.segments, progress=True, **rendering, **decoding)
    board = story.save(args.out, formats)
    logger.info("%d segments -> %s", len(story), board)
    for text in story.texts:
        out(text)
    out(board)
    return 0
