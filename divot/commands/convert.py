"""``divot convert tokenizer ...``: import released checkpoints."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="what", metavar="WHAT")
    sub.required = True
    p = sub.add_parser("tokenizer", help="Divot_tokenizer.bin + OpenCLIP ViT-H/14 -> a VideoTokenizer directory",
                       description="Convert the released tokenizer (and the OpenCLIP vision tower) to "
                                   "config.json + model.safetensors.")
    p.add_argument("--tokenizer-ckpt", required=True, type=Path,
                   help="Divot_tokenizer.bin (or .safetensors) with temporal_encoder.*, norm.*, image_proj_model.*")
    p.add_argument("--clip-ckpt", type=Path, default=None,
                   help="OpenCLIP checkpoint with visual.* keys (open_clip_pytorch_model.bin); optional if the "
                        "tokenizer file carries vit_model.* keys")
    p.add_argument("--config", type=Path, default=None,
                   help="JSON with the reference constructor arguments ('tokenizer_config') and optionally the "
                        "OpenCLIP 'open_clip_vision_cfg'; default: the paper preset")
    p.add_argument("--out", required=True, type=Path, help="output directory")
    p.set_defaults(_convert=_convert_tokenizer)


def _convert_tokenizer(args) -> int:
    from divot.convert.tokenizer import config_from_reference, convert_tokenizer

    config = None
    if args.config is not None:
        if not args.config.is_file():
            raise FileNotFoundError(f"config file not found: {args.config}")
        data = json.loads(args.config.read_text())
        ref = data.get("tokenizer_config", data)
        config = config_from_reference(ref, data.get("open_clip_vision_cfg"))
    model = convert_tokenizer(args.tokenizer_ckpt, args.clip_ckpt, config)
    model.save_pretrained(args.out)
    n = sum(p.numel() for p in model.parameters())
    logger.info("wrote %s (%.2f M parameters)", args.out, n / 1e6)
    return 0


def run(args) -> int:
    return args._convert(args)
