"""``divot cache-features --tokenizer DIR --videos SRC --out DIR``: encode every video's clips once into a token cache.

``SRC`` is a folder of videos (ids = file stems, or paths relative to the folder in subfolders) or an
annotation file (.jsonl / .json / .csv; ids from the records' ``id`` field, else the file stems). The cache
(Arrow shards + manifest, see ``divot.data.token_cache``) is resumable: rerunning skips cached ids.
Unreadable videos are logged, skipped and listed in ``skipped.jsonl``; ``summary.json`` has the counts.

Under ``torchrun --nproc_per_node N`` (any number of nodes, the cache folder on a shared file system) each rank
encodes every N-th video on its own device and rank 0 merges the parts: the cache is the same as one process
builds (``divot.data.token_cache.ranks``).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tokenizer", required=True,
                        help="tokenizer directory (config.json + model.safetensors) or a preset name "
                             "('tiny', 'paper') for random weights")
    parser.add_argument("--videos", required=True, type=Path,
                        help="a folder of videos, an annotation file (.jsonl / .json / .csv), or a story file "
                             "(.jsonl with 'segments': one clip per segment, cached as STORY_ID#K)")
    parser.add_argument("--out", required=True, type=Path, help="cache folder (created; a rerun resumes it)")
    parser.add_argument("--video-root", type=Path, default=None,
                        help="where relative paths of an annotation file start (default: its folder)")
    parser.add_argument("--batch-size", type=int, default=8, help="clips per tokenizer batch (default 8)")
    parser.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda, cuda:1 ...")
    parser.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                        help="compute precision of the tokenizer (auto: bf16 where the device runs it fast)")
    parser.add_argument("--token-dtype", choices=["float32", "bfloat16"], default="float32",
                        help="how tokens are stored (default float32)")
    parser.add_argument("--max-clips", type=int, default=None, help="at most this many 2-second clips per video (20)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N videos of the list")
    parser.add_argument("--shard-size", type=int, default=64,
                        help="videos per shard: an interrupted run loses at most this many (default 64)")
    parser.add_argument("--num-workers", type=int, default=None,
                        help="processes decoding videos ahead of the tokenizer, per rank (default: up to 4 on cpu, "
                             "8 with cuda, one core left per process; 0: decode in the main process)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def resolve_device(spec: str):
    import torch

    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(spec)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {spec}: CUDA is not available on this machine")
    return device


def run(args) -> int:
    from divot import distributed
    from divot.commands.tokenize import load_tokenizer
    from divot.constants import MAX_CLIPS
    from divot.data.prefetch import default_num_workers
    from divot.data.token_cache import build_token_cache

    for name in ("batch_size", "shard_size", "max_clips"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    if args.limit is not None and args.limit < 0:
        raise ValueError(f"--limit must be >= 0, got {args.limit}")
    if not args.videos.exists():  # before the (possibly slow) tokenizer load
        raise FileNotFoundError(f"--videos {args.videos} does not exist")
    if args.num_workers is not None and args.num_workers < 0:
        raise ValueError(f"--num-workers must be >= 0, got {args.num_workers}")
    rank, _ = distributed.init_from_env()
    try:
        device = distributed.local_device(resolve_device(args.device))
        num_workers = default_num_workers(device) if args.num_workers is None else args.num_workers
        tokenizer = load_tokenizer(args.tokenizer, device, getattr(args, "precision", "auto")).eval()
        summary = build_token_cache(
            tokenizer, args.videos, args.out, max_clips=MAX_CLIPS if args.max_clips is None else args.max_clips,
            batch_size=args.batch_size, precision=args.precision, token_dtype=args.token_dtype,
            shard_size=args.shard_size, limit=args.limit, num_workers=num_workers, video_root=args.video_root,
            tokenizer_source=args.tokenizer, progress=not args.no_progress,
        )
    finally:
        distributed.finish()
    if rank != 0:
        return 0
    c = summary["counts"]
    logger.info("%s: %d cached, %d skipped (see %s), %d already present, %d left beyond --limit",
                args.out, c["cached"], c["skipped"], args.out / "skipped.jsonl", c["already_present"], c["remaining"])
    return 0
