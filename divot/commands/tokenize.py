"""``divot tokenize VIDEO --tokenizer DIR --out tokens.safetensors``: encode a video's clips."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("video", type=Path, help="video file (mp4, avi, webm, mkv, gif, ...)")
    parser.add_argument("--tokenizer", required=True,
                        help="tokenizer directory (config.json + model.safetensors) or a preset name "
                             "('tiny', 'paper') for random weights")
    parser.add_argument("--out", required=True, type=Path, help="output .safetensors file with 'tokens'")
    parser.add_argument("--max-clips", type=int, default=None, help="at most this many 2-second clips (20)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")


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
    tokenizer = load_tokenizer(args.tokenizer, device, args.precision).eval()
    tokens = tokenizer.encode_video(args.video, max_clips=args.max_clips, batch_size=args.batch_size,
                                    precision=args.precision, progress=True)
    save_state_dict({"tokens": tokens}, args.out, metadata={"video": str(args.video), "format": "pt"})
    logger.info("%s -> %s: %d clips x %d tokens x %d", args.video, args.out, *tokens.shape)
    return 0
