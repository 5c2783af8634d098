"""Train the Divot-LLM from cached clip tokens: stages pretrain, sft_comp, sft_gen (DESIGN section 6).

    python train/llm.py --config configs/llm/pretrain_shapes_tiny.yaml [key.sub=value ...]
    torchrun --nproc_per_node 8 train/llm.py --config configs/llm/pretrain_paper.yaml      # DeepSpeed ZeRO
    deepspeed --num_gpus 8 train/llm.py --config configs/llm/pretrain_paper.yaml           # same, deepspeed

Runs resume from ``output_dir/checkpoints/latest`` by default (``resume=null`` starts over); the final model
(LoRA merged) is written to ``output_dir/model``.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: the repository's train/ package
    sys.path.insert(0, str(ROOT))

from divot.config import load_yaml  # noqa: E402
from divot.training.llm_config import LLMTrainConfig  # noqa: E402
from divot.training.llm_trainer import train_llm  # noqa: E402
from train.entry import config_parser, run_training  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    args = config_parser(__doc__, "configs/llm/pretrain_shapes_tiny.yaml").parse_args(argv)
    return run_training("train.llm", lambda: train_llm(load_yaml(LLMTrainConfig, args.config, args.overrides)))


if __name__ == "__main__":
    sys.exit(main())
