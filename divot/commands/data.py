"""``divot data ...``: dataset generation (``divot data shapes``: the synthetic shapes world; ``divot data
stories``: a story file from captioned clips; ``divot data check-stories``: validate a story file; ``divot data
episodes | captions | storylines``: story files from long videos, see ``divot.commands.data_episodes``)."""

from __future__ import annotations

import argparse
import logging

from divot.commands.console import out
from divot.commands.data_episodes import add_parsers as add_episode_parsers
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

    p = sub.add_parser("stories", help="a story JSONL (DESIGN section 10) from captioned clips",
                       description="Group consecutive captioned clips of an annotation file (JSONL / JSON / CSV "
                                   "with video + caption) into stories whose texts are the captions.")
    p.add_argument("--from", dest="source", required=True, help="annotation file of captioned clips")
    p.add_argument("--out", required=True, help="story file to write (.jsonl)")
    p.add_argument("--segments", type=int, default=3, help="clips per story (default 3)")
    p.add_argument("--instruction", default=None, help="the instruction of every story (default 'Generate a story.')")
    p.add_argument("--video-root", default=None, help="folder relative video paths start from (default: the file's)")
    p.set_defaults(_data_run=_run_stories)

    p = sub.add_parser("check-stories", help="validate a story JSONL and its video files",
                       description="Read a story file with full validation, check every video exists, and print "
                                   "the number of stories and segments.")
    p.add_argument("stories", help="story file (.jsonl)")
    p.add_argument("--video-root", default=None, help="folder relative video paths start from (default: the file's)")
    p.set_defaults(_data_run=_run_check_stories)
    add_episode_parsers(sub)  # episodes, captions, storylines, shapes-episodes (docs/stories_from_episodes.md)


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


def _run_stories(args: argparse.Namespace) -> int:
    from divot.data.stories import STORY_INSTRUCTION, build_story_file, read_stories

    if not args.out.endswith(".jsonl"):
        raise ValueError(f"--out {args.out} must be a .jsonl file")
    path = build_story_file(args.source, args.out, args.segments, args.instruction or STORY_INSTRUCTION,
                            args.video_root)
    logger.info("%d stories of %d segments -> %s", len(read_stories(path)), args.segments, path)
    return 0


def _run_check_stories(args: argparse.Namespace) -> int:
    from divot.data.stories import read_stories

    stories = read_stories(args.stories, args.video_root)
    segments = [seg for story in stories for seg in story.segments]
    missing = sorted({str(seg.video) for seg in segments if not seg.video.is_file()})
    for path in missing[:10]:
        logger.warning("missing video: %s", path)
    out(f"{len(stories)} stories, {len(segments)} segments, {len(missing)} missing video file(s)")
    return 1 if missing else 0


def run(args: argparse.Namespace) -> int:
    return int(args._data_run(args))
