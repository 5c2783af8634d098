"""Train the Divot tokenizer / de-tokenizer with the diffusion denoising objective (stages T1, T2, T3).

    python train/tokenizer.py --config configs/tokenizer/t1_shapes_tiny.yaml [key.sub=value ...]
    deepspeed --num_gpus 2 train/tokenizer.py --config configs/tokenizer/t1_paper.yaml     # ZeRO-2
    torchrun --nproc_per_node 2 train/tokenizer.py --config ...                            # same, torchrun

Runs resume from ``output_dir/checkpoints/latest`` by default (``resume=null`` starts over).
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: the repository's train/ package
    sys.path.insert(0, str(ROOT))

from divot.config import load_yaml  # noqa: E402
from divot.training.tokenizer_config import TokenizerTrainConfig  # noqa: E402
from divot.training.tokenizer_trainer import train_tokenizer  # noqa: E402
from train.entry import config_parser, run_training  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    args = config_parser(__doc__, "configs/tokenizer/t1_shapes_tiny.yaml").parse_args(argv)
    return run_training("train.tokenizer",
                        lambda: train_tokenizer(load_yaml(TokenizerTrainConfig, args.config, args.overrides)))


if __name__ == "__main__":
    sys.exit(main())
