"""A shapes world with cached tiny-tokenizer tokens, and run configs for train/llm.py over it."""

from pathlib import Path

import torch

from divot.data.shapes.generate import generate_dataset
from divot.data.token_cache import build_token_cache
from divot.tokenizer import VideoTokenizer

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "configs" / "llm"


def make_world(root: Path, num_train: int, num_held: int, seed: int = 0, held_out_combos: bool = True) -> Path:
    """``root/{train,held_out}`` shapes clips, the tiny tokenizer (random weights) saved to ``root/tokenizer``
    and its token caches ``root/{train,held_out}_tokens``. ``held_out`` holds new clips of the held-out
    (colour, shape) pairs, or with ``held_out_combos=False`` new clips of the training pairs."""
    generate_dataset(root / "train", num=num_train, seed=seed, num_stories=0, progress=False)
    generate_dataset(root / "held_out", num=num_held, seed=seed + 1, held_out=held_out_combos, num_stories=0,
                     progress=False)
    torch.manual_seed(seed)
    tokenizer = VideoTokenizer.from_preset("tiny").eval()
    tokenizer.save_pretrained(root / "tokenizer")
    tokenizer = VideoTokenizer.from_pretrained(root / "tokenizer").eval()
    for split in ("train", "held_out"):
        build_token_cache(tokenizer, root / split / "metadata.jsonl", root / f"{split}_tokens", batch_size=32,
                          progress=False)
    return root


def world_overrides(world: Path) -> list[str]:
    """Point the shapes-world configs of configs/llm at ``world``."""
    return [f"eval.annotations={world / 'held_out' / 'metadata.jsonl'}", f"eval.tokens={world / 'held_out_tokens'}",
            f"eval.questions={world / 'held_out' / 'egoschema' / 'questions.json'}",
            f"eval.answers={world / 'held_out' / 'egoschema' / 'subset_answers.json'}"]


def sources_yaml(world: Path, kinds: dict[str, float]) -> str:
    """``data.sources=[...]`` (one flow-style YAML list) with one source per kind over the training split."""
    meta, tokens = world / "train" / "metadata.jsonl", world / "train_tokens"
    items = []
    for kind, weight in kinds.items():
        if kind == "qa":
            ego = world / "train" / "egoschema"
            items.append(f"{{kind: qa, annotations: '{ego / 'questions.json'}', answers: "
                         f"'{ego / 'subset_answers.json'}', tokens: '{tokens}', weight: {weight}}}")
        else:
            items.append(f"{{kind: {kind}, annotations: '{meta}', tokens: '{tokens}', weight: {weight}}}")
    return "data.sources=[" + ", ".join(items) + "]"
