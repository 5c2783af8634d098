"""train/tokenizer.py end to end on a few shapes-world clips: outputs, skipped videos, exact resume, T2, T3."""

import json
from pathlib import Path

import pytest
import torch
import yaml

from divot import Detokenizer, VideoTokenizer
from divot.data.shapes.generate import generate_dataset
from divot.data.token_files import write_token_file
from train.tokenizer import main

CONFIG = str(Path(__file__).resolve().parents[2] / "configs" / "tokenizer" / "t1_shapes_tiny.yaml")


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes")
    generate_dataset(root / "train", num=6, seed=0, num_stories=0, progress=False)
    generate_dataset(root / "held_out", num=2, seed=1, held_out=True, num_stories=0, progress=False)
    meta = root / "train" / "metadata.jsonl"
    broken = root / "train" / "videos" / "broken.mp4"
    broken.write_text("this is not a video")
    with meta.open("a") as f:
        f.write(json.dumps({"video": "videos/broken.mp4", "split": "train"}) + "\n")
    return root


def _args(shapes, out, *extra, config=CONFIG):
    return ["--config", config, f"data.train={shapes / 'train' / 'metadata.jsonl'}",
            f"data.val={shapes / 'held_out' / 'metadata.jsonl'}", f"output_dir={out}", "data.batch_size=2",
            "optim.warmup_steps=1", "log_every=1", "eval.num_val=2", "eval.num_samples=2", "eval.sample_steps=2",
            "eval.num_probe_train=6", *extra]


def _read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_t1_writes_everything_and_counts_skipped_videos(shapes, tmp_path):
    out = tmp_path / "t1"
    assert main(_args(shapes, out, "optim.max_steps=4", "eval.every=2", "checkpoint_every=2")) == 0
    metrics = _read_jsonl(out / "metrics.jsonl")
    assert [m["step"] for m in metrics] == [1, 2, 3, 4]
    assert metrics[-1]["skipped_videos"] >= 1 and all(m["loss"] > 0 for m in metrics)
    evals = _read_jsonl(out / "eval.jsonl")
    assert [e["step"] for e in evals] == [2, 4]
    assert {"loss_own", "loss_empty", "gap", "recon_own", "recon_empty", "probe"} <= set(evals[-1])
    assert (out / "samples" / "step-00000004.gif").is_file()
    assert (out / "checkpoints" / "latest").read_text().strip() == "step-00000004"
    tok = VideoTokenizer.from_pretrained(out / "tokenizer")
    detok = Detokenizer.from_pretrained(out / "detokenizer")
    assert not torch.equal(detok.uncond_tokens, torch.zeros_like(detok.uncond_tokens))
    assert tok.config.frame_size == detok.config.frame_size


def _checkpoint(folder):
    trainer = torch.load(folder / "trainer.pt", weights_only=False)
    return trainer["model"], trainer["ema"]["shadow"], trainer["state"], trainer["optimizer"]


def test_resume_is_exact(shapes, tmp_path):
    """A run killed after its step-2 checkpoint and resumed ends with exactly the uninterrupted run's state."""
    common = ("optim.max_steps=4", "eval.every=0", "eval.probe=false", "eval.num_samples=0", "checkpoint_every=2")
    straight = tmp_path / "straight"
    assert main(_args(shapes, straight, *common)) == 0
    half = straight / "checkpoints" / "step-00000002"
    assert main(_args(shapes, tmp_path / "resumed", *common, f"resume={half}")) == 0
    a_model, a_ema, a_state, a_opt = _checkpoint(straight / "checkpoints" / "step-00000004")
    b_model, b_ema, b_state, b_opt = _checkpoint(tmp_path / "resumed" / "checkpoints" / "step-00000004")
    assert a_state == b_state and a_state["step"] == 4
    for key in a_model:
        assert torch.equal(a_model[key], b_model[key]), key
    for key in a_ema:
        assert torch.equal(a_ema[key], b_ema[key]), key
    assert all(torch.equal(a_opt["state"][k]["exp_avg"], b_opt["state"][k]["exp_avg"]) for k in a_opt["state"])


def test_t2_and_t3_continue_from_t1(shapes, tmp_path):
    t1 = tmp_path / "t1"
    quick = ("eval.every=0", "eval.probe=false", "eval.num_samples=1", "checkpoint_every=0")
    assert main(_args(shapes, t1, "optim.max_steps=1", *quick)) == 0
    t2 = tmp_path / "t2"
    # The T1 config's layout terms train the tokenizer: T2 / T3 switch them off.
    t1_only = ("layout.weight=0", "layout.grid_weight=0", "layout.shape_weight=0")
    assert main(_args(shapes, t2, "stage=T2", *t1_only, f"tokenizer={t1 / 'tokenizer'}", f"detokenizer={t1 / 'detokenizer'}",
                      "cond_dropout=0.5", "optim.max_steps=1", *quick)) == 0
    assert not (t2 / "tokenizer").exists() and (t2 / "detokenizer" / "model.safetensors").is_file()
    # T3: tokens "from the LLM" (here: the tokenizer's own) for two training videos.
    videos = sorted((shapes / "train" / "videos").glob("train_*.mp4"))[:2]
    tok = VideoTokenizer.from_pretrained(t1 / "tokenizer").eval()
    tokens = torch.cat([tok.encode_video(v) for v in videos])
    token_file = write_token_file(tmp_path / "llm_tokens.safetensors", tokens, videos, source="test")
    t3 = tmp_path / "t3"
    assert main(_args(shapes, t3, "stage=T3", *t1_only, "tokenizer=", f"detokenizer={t2 / 'detokenizer'}",
                      f"data.token_file={token_file}", "optim.max_steps=1", *quick)) == 0
    assert _read_jsonl(t3 / "eval.jsonl")[-1]["step"] == 1


def test_the_colour_phase_continues_a_t1_export(shapes, tmp_path):
    """t1_shapes_tiny_colours.yaml (train/shapes_model.py stage 2b) starts from a finished T1 run's models,
    with the channel shuffle and the 8x silhouette term, and exports a tokenizer the next stages load."""
    t1 = tmp_path / "t1"
    quick = ("eval.every=0", "eval.probe=false", "eval.num_samples=1", "checkpoint_every=0")
    assert main(_args(shapes, t1, "optim.max_steps=1", *quick)) == 0
    out = tmp_path / "t1_colours"
    assert main(_args(shapes, out, f"tokenizer={t1 / 'tokenizer'}", f"detokenizer={t1 / 'detokenizer'}",
                      "optim.max_steps=1", *quick,
                      config=str(Path(CONFIG).with_name("t1_shapes_tiny_colours.yaml")))) == 0
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    assert cfg["stage"] == "T1" and cfg["data"]["channel_shuffle"] is True
    assert cfg["layout"]["shape_weight"] == 8.0 and cfg["tokenizer_lr_scale"] == 1.0
    assert cfg["tokenizer"] == str(t1 / "tokenizer")
    assert "shape_loss" in _read_jsonl(out / "metrics.jsonl")[-1]
    before = VideoTokenizer.from_pretrained(t1 / "tokenizer").state_dict()
    after = VideoTokenizer.from_pretrained(out / "tokenizer").state_dict()
    assert before.keys() == after.keys()
    # one step: the weights moved, but as a whole they stay near the ones the phase started from
    floats = [k for k in before if before[k].dtype.is_floating_point]
    assert any(not torch.equal(before[k], after[k]) for k in floats)
    change = sum(float((after[k] - before[k]).norm()) ** 2 for k in floats) ** 0.5
    size = sum(float(before[k].norm()) ** 2 for k in floats) ** 0.5
    assert change < 0.2 * size, (change, size)


def test_the_second_t2_phase_continues_a_t2_export(shapes, tmp_path):
    """t2_shapes_tiny_more.yaml (train/shapes_model.py stage 3b) starts from a T2 run's exported de-tokenizer
    at half T2's learning rate and exports a de-tokenizer the bundle loads; the tokenizer is not written."""
    quick = ("eval.every=0", "eval.probe=false", "eval.num_samples=1", "checkpoint_every=0")
    t1, t2, more = tmp_path / "t1", tmp_path / "t2", tmp_path / "t2_more"
    assert main(_args(shapes, t1, "optim.max_steps=1", *quick)) == 0
    t2_config = str(Path(CONFIG).with_name("t2_shapes_tiny.yaml"))
    assert main(_args(shapes, t2, f"tokenizer={t1 / 'tokenizer'}", f"detokenizer={t1 / 'detokenizer'}",
                      "optim.max_steps=1", *quick, config=t2_config)) == 0
    assert main(_args(shapes, more, f"tokenizer={t1 / 'tokenizer'}", f"detokenizer={t2 / 'detokenizer'}",
                      "optim.max_steps=1", *quick, config=str(Path(CONFIG).with_name("t2_shapes_tiny_more.yaml")))) == 0
    cfg, first = (yaml.safe_load((run / "config.yaml").read_text()) for run in (more, t2))
    assert cfg["stage"] == "T2" and cfg["detokenizer"] == str(t2 / "detokenizer")
    assert cfg["optim"]["lr"] == pytest.approx(first["optim"]["lr"] / 2) and cfg["cond_dropout"] == first["cond_dropout"]
    assert not (more / "tokenizer").exists()
    before = Detokenizer.from_pretrained(t2 / "detokenizer").state_dict()
    after = Detokenizer.from_pretrained(more / "detokenizer").state_dict()
    assert before.keys() == after.keys()
    assert any(not torch.equal(before[k], after[k]) for k in before if before[k].dtype.is_floating_point)


def test_bad_config_is_named(shapes, tmp_path, caplog):
    assert main(_args(shapes, tmp_path, "optim.max_step=3")) == 2
    assert "optim.max_step" in caplog.text
    assert main(_args(shapes, tmp_path, "stage=T1", "cond_dropout=0.1")) == 2
    assert "condition dropout" in caplog.text
    assert main(_args(shapes, tmp_path, "stage=T2", "tokenizer=tiny")) == 2
    assert "stage T1 only" in caplog.text
