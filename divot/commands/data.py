"""``divot data ...``: dataset generation (``divot data shapes``: the synthetic shapes world)."""

from __future__ import annotations

import argparse
import logging

from divot.constants import DENSE_FPS, DENSE_FRAMES

logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="dataset", metavar="DATASET")
    sub.required = True
    p = sub.add_parser("shapes", help="the synthetic shapes world (DESIGN section 9)",
                       description="Write shapes-world clips, captions, question files and stories.")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--num", type=int, required=True, help="number of clips")
    p.add_argument("--seed", type=int, default=0, help="dataset seed (default 0)")
    p.add_argument("--held-out", action="store_true", help="generate the held-out split (held-out colour/shape pairs)")
    p.add_argument("--size", type=int, default=32, help="frame side in px (default 32)")
    p.add_argument("--frames", type=int, default=DENSE_FRAMES, help=f"frames per clip (default {DENSE_FRAMES})")
    p.add_argument("--fps", type=float, default=DENSE_FPS, help=f"frames per second (default {DENSE_FPS})")
    p.add_argument("--two-objects-prob", type=float, default=0.0, help="probability of a second object (default 0)")
    p.add_argument("--stories", type=int, default=None, help="number of stories (default num // 4, at least 1)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(_data_run=_run_shapes)


def _run_shapes(args: argparse.Namespace) -> int:
    from divot.data.shapes import generate_dataset  # local import keeps `divot --help` fast

    summary = generate_dataset(
        args.out, num=args.num, seed=args.seed, held_out=args.held_out, size=args.size, num_frames=args.frames,
        fps=args.fps, two_objects_prob=args.two_objects_prob, num_stories=args.stories,
        progress=not args.no_progress,
    )
    logger.info("shapes world (%s split): %d clips, %d stories, %d multiple-choice and %d open questions in %s",
                summary["split"], summary["num_clips"], summary["num_stories"], summary["num_questions"],
                summary["num_open_questions"], summary["out_dir"])
    return 0


def run(args: argparse.Namespace) -> int:
    return int(args._data_run(args))
