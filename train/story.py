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

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: the repository's train/ package
    sys.path.insert(0, str(ROOT))

from divot.config import load_yaml  # noqa: E402
from train.entry import config_parser, run_training  # noqa: E402

# part -> (stage the config must name, why)
STAGES = {"llm": ("story", "train/story.py runs stage 'story' (use train/llm.py for the other stages)"),
          "detokenizer": ("T2", "story de-tokenizer fine-tuning is stage T2 (the U-Net only, the tokenizer frozen)")}


def _train(part: str, config: str, overrides: list[str]) -> dict:
    if part == "detokenizer":
        from divot.training.tokenizer_config import TokenizerTrainConfig as Config
        from divot.training.tokenizer_trainer import train_tokenizer as train
    else:
        from divot.training.llm_config import LLMTrainConfig as Config
        from divot.training.llm_trainer import train_llm as train
    cfg = load_yaml(Config, config, overrides)
    stage, why = STAGES[part]
    if cfg.stage != stage:
        raise ValueError(f"{config}: stage is {cfg.stage!r}; {why}")
    return train(cfg)


def main(argv: list[str] | None = None) -> int:
    parser = config_parser(__doc__, "configs/story/shapes_tiny.yaml")
    parser.add_argument("--detokenizer", action="store_true",
                        help="fine-tune the de-tokenizer (stage T2) on the story clips instead of the LLM")
    args = parser.parse_args(argv)
    part = "detokenizer" if args.detokenizer else "llm"
    return run_training("train.story", lambda: _train(part, args.config, args.overrides))


if __name__ == "__main__":
    sys.exit(main())
