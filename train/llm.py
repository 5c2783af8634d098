"""Train the Divot-LLM from cached clip tokens: stages pretrain, sft_comp, sft_gen (DESIGN section 6).

    python train/llm.py --config configs/llm/pretrain_shapes_tiny.yaml [key.sub=value ...]
    torchrun --nproc_per_node 8 train/llm.py --config configs/llm/pretrain_paper.yaml      # DeepSpeed ZeRO
    deepspeed --num_gpus 8 train/llm.py --config configs/llm/pretrain_paper.yaml           # same, deepspeed

Runs resume from ``output_dir/checkpoints/latest`` by default (``resume=null`` starts over); the final model
(LoRA merged) is written to ``output_dir/model``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from divot.config import ConfigError, load_yaml
from divot.training.engine import world_info
from divot.training.llm_config import LLMTrainConfig
from divot.training.llm_trainer import train_llm


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="run config (YAML), e.g. configs/llm/pretrain_shapes_tiny.yaml")
    parser.add_argument("--local_rank", "--local-rank", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. optim.lr=3e-4 data.batch_size=16")
    args = parser.parse_args(argv)
    rank = world_info()[0]
    logging.basicConfig(level=logging.INFO if rank == 0 else logging.WARNING,
                        format=f"%(asctime)s [rank {rank}] %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    log = logging.getLogger("train.llm")
    try:
        cfg = load_yaml(LLMTrainConfig, args.config, args.overrides)
        result = train_llm(cfg)
    except (ConfigError, ValueError, FileNotFoundError, KeyError) as e:
        log.error("%s", e.args[0] if isinstance(e, KeyError) and e.args else e)
        return 2
    if rank == 0 and result:
        log.info("final evaluation: %s", json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
