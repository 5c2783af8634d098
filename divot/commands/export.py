"""``divot export RUN_OR_CHECKPOINT --out DIR``: a trained Divot-LLM checkpoint -> a DivotLLM directory.

LoRA adapters are merged into the LLM, which is written as a plain Hugging Face model (``DIR/llm``, with the
tokenizer) beside the projections (``DIR/model.safetensors``); load it with ``DivotLLM.from_pretrained(DIR)``.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", type=Path,
                        help="a checkpoint folder (checkpoints/step-XXXXXXXX) or a run folder (its latest checkpoint)")
    parser.add_argument("--out", required=True, type=Path, help="output directory")


def resolve_checkpoint(path: Path) -> Path:
    from divot.training.checkpoint import CheckpointManager

    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    if (path / "trainer.pt").is_file():
        return path
    for root in (path / "checkpoints", path):
        latest = CheckpointManager(root).latest()
        if latest is not None:
            return latest
    raise FileNotFoundError(f"{path} is neither a checkpoint folder (trainer.pt) nor a run folder with checkpoints/")


def run(args) -> int:
    from divot.training.llm_model import export_model, load_checkpoint_model

    checkpoint = resolve_checkpoint(args.checkpoint)
    cfg, model = load_checkpoint_model(checkpoint)
    export_model(model, args.out)
    logger.info("exported %s (stage %s%s) to %s", checkpoint, cfg.stage, ", LoRA merged" if cfg.lora.enabled else "",
                args.out)
    return 0
