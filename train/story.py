"""Story fine-tuning (DESIGN sections 6 and 10): the Divot-LLM on interleaved text + clips, and optionally the
de-tokenizer on the story videos.

    python train/story.py --config configs/story/shapes_tiny.yaml [key.sub=value ...]        # the LLM (LoRA)
    python train/story.py --detokenizer --config configs/story/detokenizer_shapes_tiny.yaml  # T2 on story clips
    torchrun --nproc_per_node 8 train/story.py --config configs/story/paper.yaml             # DeepSpeed ZeRO-2

The LLM run is the ``story`` stage of the Divot-LLM trainer (``train/llm.py``): story sources (a story JSONL +
the token cache of its segments, ``divot cache-features --videos stories.jsonl``), a GMM loss on every clip,
one bidirectional query block per clip, texts and delimiters as labels, LoRA by default; the same
checkpoints, exact resume, DeepSpeed and export (``output_dir/model``, LoRA merged). With ``--detokenizer`` the
run is the tokenizer trainer's T2 stage (U-Net only, tokenizer frozen, condition dropout) on the story
segments' clips: the domain fine-tuning the paper did for its cartoon stories.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: the repository's train/ package
    sys.path.insert(0, str(ROOT))

from divot.config import ConfigError, load_yaml  # noqa: E402
from divot.training.engine import world_info  # noqa: E402


def _train_llm(config: str, overrides: list[str]) -> dict:
    from divot.training.llm_config import LLMTrainConfig
    from divot.training.llm_trainer import train_llm

    cfg = load_yaml(LLMTrainConfig, config, overrides)
    if cfg.stage != "story":
        raise ValueError(f"{config}: stage is {cfg.stage!r}; train/story.py runs stage 'story' (use train/llm.py "
                         "for the other stages)")
    return train_llm(cfg)


def _train_detokenizer(config: str, overrides: list[str]) -> dict:
    from divot.training.tokenizer_config import TokenizerTrainConfig
    from divot.training.tokenizer_trainer import train_tokenizer

    cfg = load_yaml(TokenizerTrainConfig, config, overrides)
    if cfg.stage != "T2":
        raise ValueError(f"{config}: stage is {cfg.stage!r}; story de-tokenizer fine-tuning is stage T2 (the U-Net "
                         "only, the tokenizer frozen)")
    return train_tokenizer(cfg)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="run config (YAML), e.g. configs/story/shapes_tiny.yaml")
    parser.add_argument("--detokenizer", action="store_true",
                        help="fine-tune the de-tokenizer (stage T2) on the story clips instead of the LLM")
    parser.add_argument("--local_rank", "--local-rank", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. optim.lr=3e-4 data.batch_size=16")
    args = parser.parse_args(argv)
    rank = world_info()[0]
    logging.basicConfig(level=logging.INFO if rank == 0 else logging.WARNING,
                        format=f"%(asctime)s [rank {rank}] %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    log = logging.getLogger("train.story")
    try:
        run = _train_detokenizer if args.detokenizer else _train_llm
        result = run(args.config, args.overrides)
    except (ConfigError, ValueError, FileNotFoundError, KeyError) as e:
        log.error("%s", e.args[0] if isinstance(e, KeyError) and e.args else e)
        return 2
    if rank == 0 and result:
        log.info("final evaluation: %s", json.dumps({k: v for k, v in result.items() if not isinstance(v, list)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
