"""train/llm.py end to end on a tiny shapes world: outputs, exact resume, LoRA export round trip, frozen parts."""

import json

import pytest
import torch

from divot.cli import main as divot_main
from divot.llm import DivotLLM, LLMCollator, SequenceBuilder
from divot.training.llm_model import load_checkpoint_model
from tests.training.llm_world import CONFIGS, make_world, sources_yaml, world_overrides
from train.llm import main

PRETRAIN = str(CONFIGS / "pretrain_shapes_tiny.yaml")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return make_world(tmp_path_factory.mktemp("llm_world"), num_train=24, num_held=6)


def _args(world, out, *extra, config=PRETRAIN, kinds=None):
    return ["--config", config, f"output_dir={out}", sources_yaml(world, kinds or {"caption": 1, "generation": 1}),
            *world_overrides(world), "data.batch_size=4", "optim.warmup_steps=1", "log_every=1", "eval.every=0",
            "eval.num_caption=2", "eval.num_gmm=4", "eval.num_mc=2", "checkpoint_every=2", *extra]


def _jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def _fixed_batch(model, world):
    from divot.data.token_cache import TokenCache

    cache = TokenCache(world / "held_out_tokens")
    ids = cache.ids()[:2]
    builder = SequenceBuilder.from_config(model.tokenizer, model.config)
    samples = [builder.caption(cache[ids[0]], "a red circle moves left"),
               builder.generation("a blue square grows", cache[ids[1]][:1])]
    return LLMCollator(builder.ids.pad, model.config.num_queries)(samples)


@pytest.fixture(scope="module")
def pretrained(world, tmp_path_factory):
    """A 4-step pretraining run (captions, generation, images) with evaluations at steps 2 and 4."""
    out = tmp_path_factory.mktemp("pretrain")
    kinds = {"caption": 1, "generation": 1, "image": 0.5}
    assert main(_args(world, out, "optim.max_steps=4", "eval.every=2", kinds=kinds)) == 0
    return out


def test_pretrain_writes_metrics_eval_checkpoints_and_model(pretrained):
    metrics = _jsonl(pretrained / "metrics.jsonl")
    assert [m["step"] for m in metrics] == [1, 2, 3, 4]
    model = DivotLLM.from_pretrained(pretrained / "model")
    w_lm, w_gmm = model.config.lm_loss_weight, model.config.gmm_loss_weight
    for m in metrics:
        assert m["loss"] > 0 and m["lm_loss"] > 0 and m["tokens_per_s"] > 0 and m["lr"] > 0
        # One micro-batch per logged step (log_every=1, no accumulation), each loss logged as the float32
        # value it was (JSON keeps every digit): the total is the weighted sum up to float32 rounding. A step
        # without a generation sample logs gmm_loss None, and its GMM term is 0.
        want = w_lm * m["lm_loss"] + w_gmm * (m["gmm_loss"] or 0.0)
        assert m["loss"] == pytest.approx(want, rel=1e-6, abs=0), m
    assert any(m["gmm_loss"] is not None for m in metrics), "the mixture never drew a generation sample"
    evals = _jsonl(pretrained / "eval.jsonl")
    assert [e["step"] for e in evals] == [2, 4]
    assert {"gmm_nll", "caption_lm_loss", "caption_colour_acc", "caption_shape_acc", "caption_motion_acc",
            "mc_acc"} <= set(evals[-1])
    assert (pretrained / "checkpoints" / "latest").read_text().strip() == "step-00000004"
    assert model.config.num_queries == 16


def test_resume_after_interruption_gives_the_same_losses(world, tmp_path):
    """LoRA (with dropout) run killed after its step-2 checkpoint: the resumed steps 3-4 match exactly."""
    common = ("optim.max_steps=4", "lora.enabled=true", "lora.r=4", "lora.alpha=8")
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert main(_args(world, straight, *common)) == 0
    assert main(_args(world, resumed, *common, f"resume={straight / 'checkpoints' / 'step-00000002'}")) == 0
    a, b = _jsonl(straight / "metrics.jsonl"), _jsonl(resumed / "metrics.jsonl")
    assert [m["step"] for m in b] == [3, 4]
    for x, y in zip(a[2:], b, strict=True):
        assert x["loss"] == y["loss"] and x["lm_loss"] == y["lm_loss"] and x["samples"] == y["samples"]
    sa = torch.load(straight / "checkpoints" / "step-00000004" / "trainer.pt", weights_only=False)
    sb = torch.load(resumed / "checkpoints" / "step-00000004" / "trainer.pt", weights_only=False)
    assert sa["state"] == sb["state"]
    assert any("lora_A" in k for k in sa["model"])
    for key in sa["model"]:
        assert torch.equal(sa["model"][key], sb["model"][key]), key


def test_lora_export_round_trip_gives_identical_losses(world, tmp_path):
    out = tmp_path / "lora"
    assert main(_args(world, out, "optim.max_steps=2", "lora.enabled=true", "lora.r=4", "optim.lr=1e-2")) == 0
    checkpoint = out / "checkpoints" / "step-00000002"
    _, trained = load_checkpoint_model(checkpoint)
    batch = _fixed_batch(trained, world)
    with torch.no_grad():
        want = trained(batch)
    assert divot_main(["export", str(out), "--out", str(tmp_path / "exported")]) == 0
    llm_weights = (tmp_path / "exported" / "llm").glob("*.safetensors")
    from safetensors import safe_open

    keys = [k for f in llm_weights for k in safe_open(str(f), "pt").keys()]
    assert keys and not any("lora" in k or "modules_to_save" in k for k in keys), "not a plain HF model"
    for folder in (tmp_path / "exported", out / "model"):  # the command and the trainer's own export
        loaded = DivotLLM.from_pretrained(folder).eval()
        with torch.no_grad():
            got = loaded(batch)
        for key in ("loss", "lm_loss", "gmm_loss"):
            assert torch.allclose(got[key], want[key], atol=1e-5), (folder, key, got[key], want[key])


@pytest.mark.parametrize("stage, frozen, trained", [("sft_comp", "gmm_head", "input_proj"),
                                                    ("sft_gen", "input_proj", "gmm_head")])
def test_sft_stages_keep_their_projection_fixed(world, pretrained, tmp_path, stage, frozen, trained):
    config = str(CONFIGS / f"{stage}_shapes_tiny.yaml")
    kinds = {"qa": 1, "caption": 1, "generation": 1}
    out = tmp_path / stage
    assert main(_args(world, out, "optim.max_steps=2", f"model={pretrained / 'model'}", "optim.lr=1e-2",
                      config=config, kinds=kinds)) == 0
    before = DivotLLM.from_pretrained(pretrained / "model")
    after = DivotLLM.from_pretrained(out / "model")
    for name, p in getattr(before, frozen).state_dict().items():
        assert torch.equal(p, getattr(after, frozen).state_dict()[name]), f"{frozen}.{name} changed"
    assert any(not torch.equal(p, getattr(after, trained).state_dict()[n])
               for n, p in getattr(before, trained).state_dict().items()), f"{trained} did not train"


def test_config_errors_are_clear(world, tmp_path, caplog, capsys):
    assert main(_args(world, tmp_path / "a", "optim.max_step=3")) == 2
    assert "optim.max_step" in caplog.text
    bad_source = "data.sources=[{kind: captions, annotations: a.jsonl, tokens: t}]"
    assert main(_args(world, tmp_path / "b", bad_source)) == 2
    assert "kind must be one of" in caplog.text
    assert main(_args(world, tmp_path / "c", "freeze=[gmm]")) == 2
    assert "freeze: unknown part" in caplog.text
    assert main(_args(world, tmp_path / "e", "label_smoothing=1.0")) == 2
    assert "label_smoothing must be in [0, 1)" in caplog.text
    assert main(_args(world, tmp_path / "f", "word_dropout=-0.1")) == 2
    assert "word_dropout must be in [0, 1)" in caplog.text
    missing = f"data.sources=[{{kind: caption, annotations: '{tmp_path / 'none.jsonl'}', tokens: '{tmp_path}'}}]"
    assert main(_args(world, tmp_path / "d", missing)) == 2
    assert divot_main(["export", str(tmp_path / "nothing"), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("divot export: error:")
