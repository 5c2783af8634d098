"""train/story.py end to end on a few shapes-world stories: the story stage of the LLM trainer (LoRA, a GMM loss
on every clip, exact resume, export) and the de-tokenizer's T2 fine-tuning on story clips."""

import json
from pathlib import Path

import pytest
import torch

from divot.data.shapes.generate import generate_dataset
from divot.data.token_cache import build_token_cache
from divot.llm import DivotLLM
from divot.tokenizer import VideoTokenizer
from train.story import main

ROOT = Path(__file__).resolve().parents[2]
CONFIG = str(ROOT / "configs" / "story" / "shapes_tiny.yaml")
DETOK_CONFIG = str(ROOT / "configs" / "story" / "detokenizer_shapes_tiny.yaml")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("story_world")
    generate_dataset(root / "train", num=0, seed=0, num_stories=8, progress=False)
    generate_dataset(root / "held_out", num=0, seed=1, held_out=True, num_stories=3, progress=False)
    torch.manual_seed(0)
    tokenizer = VideoTokenizer.from_preset("tiny").eval()
    tokenizer.save_pretrained(root / "tokenizer")
    for split in ("train", "held_out"):
        build_token_cache(tokenizer, root / split / "stories.jsonl", root / f"{split}_tokens", progress=False)
    DivotLLM.from_preset("tiny").save_pretrained(root / "llm")
    return root


def _args(world, out, *extra):
    return ["--config", CONFIG, f"model={world / 'llm'}", f"output_dir={out}", "data.batch_size=4",
            f"data.sources=[{{kind: story, annotations: '{world / 'train' / 'stories.jsonl'}', "
            f"tokens: '{world / 'train_tokens'}'}}]",
            f"eval.stories={world / 'held_out' / 'stories.jsonl'}", f"eval.story_tokens={world / 'held_out_tokens'}",
            "optim.warmup_steps=1", "log_every=1", "lora.r=4", "lora.alpha=4", *extra]


def _jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_story_stage_trains_evaluates_and_exports(world, tmp_path):
    out = tmp_path / "story"
    assert main(_args(world, out, "optim.max_steps=4", "eval.every=2", "checkpoint_every=2")) == 0
    metrics = _jsonl(out / "metrics.jsonl")
    assert [m["step"] for m in metrics] == [1, 2, 3, 4]
    assert all(m["gmm_loss"] is not None and m["lm_loss"] > 0 for m in metrics)  # every story has clips
    evals = _jsonl(out / "eval.jsonl")
    assert [e["step"] for e in evals] == [2, 4]
    assert evals[-1]["num_stories"] == 3 and {"story_lm_loss", "story_gmm_nll"} <= set(evals[-1])
    model = DivotLLM.from_pretrained(out / "model")  # LoRA merged into a plain LLM
    base = DivotLLM.from_pretrained(world / "llm")
    assert torch.equal(model.input_proj[0].weight, base.input_proj[0].weight)  # story stage: input_proj frozen
    assert not torch.equal(model.gmm_head.proj[0].weight, base.gmm_head.proj[0].weight)


def test_story_resume_gives_the_same_losses(world, tmp_path):
    common = ["optim.max_steps=4", "checkpoint_every=2", "eval.every=0", "optim.lr=1e-2"]
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert main(_args(world, straight, *common)) == 0
    half = straight / "checkpoints" / "step-00000002"
    assert main(_args(world, resumed, *common, f"resume={half}")) == 0
    a = [m["loss"] for m in _jsonl(straight / "metrics.jsonl")][2:]
    b = [m["loss"] for m in _jsonl(resumed / "metrics.jsonl")]
    assert a == pytest.approx(b, abs=1e-6)


def test_wrong_stage_and_missing_caches_are_named(world, tmp_path, caplog):
    assert main(_args(world, tmp_path / "a", "stage=pretrain")) == 2
    assert "train/story.py runs stage 'story'" in caplog.text
    missing = (f"data.sources=[{{kind: story, annotations: '{world / 'train' / 'stories.jsonl'}', "
               f"tokens: '{world / 'held_out_tokens'}'}}]")
    assert main(_args(world, tmp_path / "b", missing)) == 2
    assert "no story of" in caplog.text and "cache-features --videos" in caplog.text
    caption_format = (f"data.sources=[{{kind: story, format: caption, annotations: "
                      f"'{world / 'train' / 'stories.jsonl'}', tokens: '{world / 'train_tokens'}'}}]")
    assert main(_args(world, tmp_path / "c", caption_format)) == 2
    assert "stories and only stories use the story format" in caplog.text


def test_detokenizer_fine_tuning_on_story_clips(world, tmp_path):
    from divot import Detokenizer

    torch.manual_seed(0)
    detok = Detokenizer.from_preset("tiny")
    detok.save_pretrained(world / "detokenizer")
    out = tmp_path / "detok"
    args = ["--detokenizer", "--config", DETOK_CONFIG, f"tokenizer={world / 'tokenizer'}",
            f"detokenizer={world / 'detokenizer'}", f"data.train={world / 'train' / 'stories.jsonl'}",
            f"data.val={world / 'held_out' / 'stories.jsonl'}", f"output_dir={out}", "data.batch_size=2",
            "optim.max_steps=2", "optim.warmup_steps=1", "log_every=1", "eval.every=0", "eval.num_val=2",
            "eval.num_samples=2", "eval.sample_steps=2"]
    assert main(args) == 0
    assert [m["step"] for m in _jsonl(out / "metrics.jsonl")] == [1, 2]
    assert (out / "detokenizer" / "config.json").is_file()
    assert main([*args[:-11], "stage=T1", f"output_dir={tmp_path / 'x'}"]) == 2  # T1 would train the tokenizer
