"""Train the Divot tokenizer / de-tokenizer with the diffusion denoising objective (stages T1, T2, T3).

    python train/tokenizer.py --config configs/tokenizer/t1_shapes_tiny.yaml [key.sub=value ...]
    deepspeed --num_gpus 2 train/tokenizer.py --config configs/tokenizer/t1_paper.yaml     # ZeRO-2
    torchrun --nproc_per_node 2 train/tokenizer.py --config ...                            # same, torchrun

Runs resume from ``output_dir/checkpoints/latest`` by default (``resume=null`` starts over).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from divot.config import ConfigError, load_yaml
from divot.training.engine import world_info
from divot.training.tokenizer_config import TokenizerTrainConfig
from divot.training.tokenizer_trainer import train_tokenizer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="run config (YAML), e.g. configs/tokenizer/t1_shapes_tiny.yaml")
    parser.add_argument("--local_rank", "--local-rank", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. optim.lr=3e-4 data.batch_size=16")
    args = parser.parse_args(argv)
    rank = world_info()[0]
    logging.basicConfig(level=logging.INFO if rank == 0 else logging.WARNING,
                        format=f"%(asctime)s [rank {rank}] %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    try:
        cfg = load_yaml(TokenizerTrainConfig, args.config, args.overrides)
        result = train_tokenizer(cfg)
    except (ConfigError, ValueError, FileNotFoundError) as e:
        logging.getLogger("train.tokenizer").error("%s", e)
        return 2
    if rank == 0 and result:
        logging.getLogger("train.tokenizer").info("final evaluation: %s", json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
