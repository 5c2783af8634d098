"""``divot tokenize VIDEO --tokenizer DIR --out tokens.safetensors``: encode a video's clips.

``VIDEO`` may be a folder: ``--out`` is then a folder receiving ``<video path without suffix>.safetensors`` for
every video in it (recursively); ``--num-workers`` processes decode the next videos while one is tokenized,
and videos that cannot be read are logged, skipped and counted. For a resumable, shared store of many videos'
tokens use ``divot cache-features``.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("video", type=Path, help="video file (mp4, avi, webm, mkv, gif, ...) or a folder of videos")
    parser.add_argument("--tokenizer", required=True,
                        help="tokenizer directory (config.json + model.safetensors) or a preset name "
                             "('tiny', 'paper') for random weights")
    parser.add_argument("--out", required=True, type=Path,
                        help="output .safetensors file with 'tokens' (a folder when VIDEO is a folder)")
    parser.add_argument("--max-clips", type=int, default=None, help="at most this many 2-second clips (20)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    parser.add_argument("--num-workers", type=int, default=None,
                        help="a folder: processes decoding ahead (default: up to 4, one core left; 0: none)")


def load_tokenizer(spec: str, device=None, precision: str = "auto"):
    """A tokenizer from a directory, or a randomly initialised preset by name. With ``precision`` "auto" the
    frozen ViT's matrices are held in bf16 where bf16 is fast on ``device`` (the same tokens as bf16 autocast)."""
    import torch

    from divot.tokenizer import VideoTokenizer
    from divot.tokenizer.model import bf16_is_fast

    if Path(spec).is_dir():
        return VideoTokenizer.from_pretrained(spec, device=device, dtype="auto" if precision == "auto" else None)
    tokenizer = VideoTokenizer.from_pretrained_or_preset(spec, device)
    if precision == "auto" and tokenizer.frozen_vit_matrices() and bf16_is_fast(torch.device(device or "cpu")):
        tokenizer.cast_frozen_vit()
    return tokenizer


def run(args) -> int:
    import torch

    from divot.hub import save_state_dict

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if args.video.is_dir():
        if args.out.is_file():
            raise ValueError(f"--out {args.out} is a file; a folder of videos needs an output folder")
        return _run_folder(args, load_tokenizer(args.tokenizer, device, args.precision).eval(), device)
    tokenizer = load_tokenizer(args.tokenizer, device, args.precision).eval()
    tokens = tokenizer.encode_video(args.video, max_clips=args.max_clips, batch_size=args.batch_size,
                                    precision=args.precision, progress=True)
    save_state_dict({"tokens": tokens}, args.out, metadata={"video": str(args.video), "format": "pt"})
    logger.info("%s -> %s: %d clips x %d tokens x %d", args.video, args.out, *tokens.shape)
    return 0


def _run_folder(args, tokenizer, device) -> int:
    """Every video of the folder -> ``--out/<relative path>.safetensors`` (as ``encode_video`` would give)."""
    import functools

    import torch
    from tqdm.auto import tqdm

    from divot.constants import MAX_CLIPS
    from divot.data.loading import load_sparse_clips
    from divot.data.prefetch import LoadFailed, default_num_workers, prefetch
    from divot.data.video import VideoDecodeError, list_videos
    from divot.hub import save_state_dict

    videos = list_videos(args.video, recursive=True)
    if not videos:
        raise ValueError(f"no video files in {args.video}")
    num_workers = default_num_workers(torch.device(device)) if args.num_workers is None else args.num_workers
    if num_workers < 0:
        raise ValueError(f"--num-workers must be >= 0, got {num_workers}")
    load = functools.partial(load_sparse_clips, size=tokenizer.config.frame_size,
                             max_clips=MAX_CLIPS if args.max_clips is None else args.max_clips)
    skipped = 0
    decoded = prefetch(videos, load, num_workers, errors=(VideoDecodeError, FileNotFoundError, OSError))
    for path, clips in tqdm(decoded, total=len(videos), desc="tokenize", unit="video"):
        if isinstance(clips, LoadFailed):
            logger.warning("skipping unreadable video %s: %s", path, clips.error)
            skipped += 1
            continue
        tokens = tokenizer.encode(clips, batch_size=args.batch_size, precision=args.precision)  # (clips, q, d)
        out = args.out / path.relative_to(args.video).with_suffix(".safetensors")
        out.parent.mkdir(parents=True, exist_ok=True)
        save_state_dict({"tokens": tokens}, out, metadata={"video": str(path), "format": "pt"})
    logger.info("%s -> %s: %d videos tokenized, %d skipped (unreadable)", args.video, args.out,
                len(videos) - skipped, skipped)
    return 0
