"""``divot data episodes | captions | storylines | shapes-episodes``: story datasets from long videos, the flow
of docs/stories_from_episodes.md. Only argparse here; the library (``divot.data.episodes``) is imported when a
command runs, so ``divot data --help`` loads neither torch nor PySceneDetect."""

from __future__ import annotations

import argparse
import logging

logger = logging.getLogger(__name__)


def add_parsers(sub) -> None:
    """Add the episode subcommands to ``divot data``'s subparsers."""
    p = sub.add_parser("episodes", help="episodes -> 2-second clips (shot detection, stitching): metadata.jsonl",
                       description="Split every video under EPISODES_DIR into shots (PySceneDetect), merge shots "
                                   "shorter than a clip, cut shots into 2-second clips, optionally stitch adjacent "
                                   "shots into scenes by the cosine of their mean tokens, and write "
                                   "OUT/metadata.jsonl and OUT/episodes.json. A rerun skips finished episodes. "
                                   "Needs the episodes extra: pip install 'divot[episodes]'.")
    p.add_argument("episodes_dir", help="folder of episode videos (searched recursively)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--detector", choices=["content", "adaptive"], default="content",
                   help="PySceneDetect detector (default content)")
    p.add_argument("--threshold", type=float, default=None,
                   help="detector threshold (default: PySceneDetect's, 27 for content, 3 for adaptive)")
    p.add_argument("--min-shot-seconds", type=float, default=0.5,
                   help="no cut closer than this to the previous one (default 0.5)")
    p.add_argument("--model", default=None,
                   help="Divot model directory, its tokenizer/ directory, or a bundled name (shapes-tiny): the "
                        "tokenizer whose tokens decide stitching (default: no stitching, each shot is a scene)")
    p.add_argument("--stitch-threshold", type=float, default=None,
                   help="stitch adjacent shots whose mean tokens have a cosine >= this (default 0.97 with --model)")
    p.add_argument("--no-stitch", action="store_true", help="never stitch, even with --model")
    p.add_argument("--device", default="auto", help="device of the tokenizer: auto, cpu, cuda, cuda:1 ...")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(_data_run=_run_episodes)

    p = sub.add_parser("captions", help="a caption per clip of `divot data episodes`: captions.jsonl",
                       description="Caption every clip of DIR/metadata.jsonl with a Divot model or an "
                                   "OpenAI-compatible vision endpoint (8 frames per clip as JPEG image_url parts); "
                                   "writes DIR/captions.jsonl and DIR/captions.json (captioner, version, prompt). "
                                   "A rerun keeps the captions already made.")
    p.add_argument("dir", help="output folder of `divot data episodes`")
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--captioner", help="Divot model directory or bundled name (shapes-tiny)")
    who.add_argument("--captioner-url", help="OpenAI-compatible API base, e.g. http://localhost:8000/v1")
    p.add_argument("--captioner-model", help="model name sent to --captioner-url")
    p.add_argument("--prompt", default=None, help="caption prompt of the endpoint ({num_frames} is filled in); for a "
                   "Divot model: an instruction turning captioning into a QA turn (default: the caption prompt)")
    p.add_argument("--api-key-env", default="OPENAI_API_KEY", help="environment variable holding the API key")
    p.add_argument("--batch-size", type=int, default=16, help="clips captioned together by a Divot model")
    p.add_argument("--max-new-tokens", type=int, default=32, help="caption length limit of a Divot model")
    p.add_argument("--device", default="auto", help="device of a Divot model: auto, cpu, cuda ...")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(_data_run=_run_captions)

    p = sub.add_parser("storylines", help="K consecutive captions -> one story: the story JSONL of DESIGN section 10",
                       description="Write a story (instruction + one sentence per clip) for each run of --segments "
                                   "consecutive captioned clips of DIR/captions.jsonl, with a template or an "
                                   "OpenAI-compatible text endpoint; every row is validated by the story reader.")
    p.add_argument("dir", help="output folder of `divot data captions`")
    p.add_argument("--storyline", default="template",
                   help="'template' (deterministic) or an OpenAI-compatible API base URL (default template)")
    p.add_argument("--storyline-model", default=None, help="model name sent to the --storyline URL")
    p.add_argument("--api-key-env", default="OPENAI_API_KEY", help="environment variable holding the API key")
    p.add_argument("--segments", type=int, default=3, help="clips per story (default 3)")
    p.add_argument("--group", choices=["scene", "episode"], default="scene",
                   help="stories stay within a scene (default) or may cross scenes of an episode")
    p.add_argument("--out", default=None, help="story file (default DIR/stories.jsonl)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(_data_run=_run_storylines)

    p = sub.add_parser("shapes-episodes", help="synthetic shapes-world episodes with known cuts and fades",
                       description="Write shapes-world episodes (scenes on different backgrounds joined by hard "
                                   "cuts and cross-fades) and truth.json with the cut frames and fade spans.")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--num", type=int, default=3, help="number of episodes (default 3)")
    p.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    p.add_argument("--scenes", type=int, default=5, help="scenes per episode (default 5)")
    p.add_argument("--size", type=int, default=64, help="frame side in px (default 64)")
    p.add_argument("--fps", type=float, default=16.0, help="frames per second (default 16)")
    p.add_argument("--fade-prob", type=float, default=0.25, help="probability of a cross-fade between scenes")
    p.set_defaults(_data_run=_run_shapes_episodes)


def _library_error(err: Exception):
    from divot.cli import CommandError

    return CommandError(str(err))


def _run_episodes(args: argparse.Namespace) -> int:
    from divot.data.episodes import require_scenedetect

    try:
        require_scenedetect()
    except ImportError as err:
        raise _library_error(err) from None
    from divot.data.episodes.scenes import DetectorSettings
    from divot.data.episodes.splitter import DEFAULT_STITCH_THRESHOLD, SplitSettings, split_episodes

    stitch = args.model is not None and not args.no_stitch
    if args.stitch_threshold is not None and not stitch:
        raise ValueError("--stitch-threshold needs --model (the tokenizer) and no --no-stitch")
    tokenizer = None
    threshold = (DEFAULT_STITCH_THRESHOLD if args.stitch_threshold is None else args.stitch_threshold) if stitch else None
    if stitch:
        tokenizer = _load_tokenizer(args.model, args.device)
    else:
        logger.info("no stitching: every shot is its own scene%s", "" if args.no_stitch else " (no --model)")
    settings = SplitSettings(DetectorSettings(args.detector, args.threshold, args.min_shot_seconds), threshold,
                             args.model if stitch else None)
    s = split_episodes(args.episodes_dir, args.out, settings, tokenizer, progress=not args.no_progress)
    logger.info("%d episodes (%d split, %d resumed, %d unreadable): %d cuts, %d shots, %d scenes, %d clips -> %s "
                "in %.1f s", s["num_episodes"], s["num_split"], s["num_resumed"], s["num_unreadable"], s["num_cuts"],
                s["num_shots"], s["num_scenes"], s["num_clips"], s["metadata"], s["seconds"])
    return 0


def _load_tokenizer(spec: str, device: str):
    """The VideoTokenizer of a Divot model directory / bundled name, or a tokenizer directory."""
    from divot.chat.bundled import resolve_model_path
    from divot.commands.cache_features import resolve_device
    from divot.tokenizer import VideoTokenizer

    root = resolve_model_path(spec)
    path = root / "tokenizer" if (root / "tokenizer").is_dir() else root
    return VideoTokenizer.from_pretrained(path).to(resolve_device(device)).eval()


def _run_captions(args: argparse.Namespace) -> int:
    from divot.data.episodes.captions import CAPTION_PROMPT, DivotCaptioner, OpenAICaptioner, caption_clips

    if args.captioner_url:
        if not args.captioner_model:
            raise ValueError("--captioner-url needs --captioner-model (the model name to request)")
        captioner = OpenAICaptioner(args.captioner_url, args.captioner_model, args.prompt or CAPTION_PROMPT,
                                    api_key_env=args.api_key_env)
    else:
        from divot.commands.cache_features import resolve_device

        captioner = DivotCaptioner(args.captioner, resolve_device(args.device), args.prompt, args.max_new_tokens,
                                   args.batch_size)
    try:
        s = caption_clips(args.dir, captioner, progress=not args.no_progress)
    except RuntimeError as err:  # the endpoint failed: what is captioned so far is kept for a rerun
        raise _library_error(err) from None
    logger.info("%d clips: %d captioned, %d resumed, %d empty, %d unreadable -> %s in %.1f s", s["num_clips"],
                s["num_captioned"], s["num_resumed"], s["num_empty"], s["num_unreadable"], s["captions"], s["seconds"])
    return 0


def _run_storylines(args: argparse.Namespace) -> int:
    from divot.data.episodes.storylines import OpenAIStoryliner, TemplateStoryliner, write_storylines

    if args.storyline == "template":
        storyliner = TemplateStoryliner()
    else:
        if not args.storyline_model:
            raise ValueError("--storyline URL needs --storyline-model (the model name to request)")
        storyliner = OpenAIStoryliner(args.storyline, args.storyline_model, api_key_env=args.api_key_env)
    try:
        s = write_storylines(args.dir, storyliner, args.segments, args.group, args.out, progress=not args.no_progress)
    except RuntimeError as err:  # the endpoint failed
        raise _library_error(err) from None
    logger.info("%d stories of %d clips (%d failed) -> %s in %.1f s", s["num_stories"], s["segments"],
                s["num_failed"], s["stories"], s["seconds"])
    return 0


def _run_shapes_episodes(args: argparse.Namespace) -> int:
    from divot.data.shapes.episodes import generate_episodes

    truth = generate_episodes(args.out, args.num, args.seed, args.scenes, args.size, args.fps,
                              fade_prob=args.fade_prob)
    logger.info("%d episodes, %d cuts, %d cross-fades -> %s", len(truth), sum(len(t["cuts"]) for t in truth.values()),
                sum(len(t["fades"]) for t in truth.values()), args.out)
    return 0
