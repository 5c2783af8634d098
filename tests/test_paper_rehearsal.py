"""benchmarks/paper_rehearsal.py: the released layouts it writes (checked against the golden reference files, which
use the released key names), the paper-size layouts (on the meta device), sharded LLM writing, step selection and
failure handling, and (slow) the whole rehearsal at tiny size."""

import json
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from tests.conftest import require_mistral_spm

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import _released_files as rf  # noqa: E402
import paper_rehearsal  # noqa: E402


def golden_shapes(golden_dir: Path, *names: str) -> dict[str, tuple[int, ...]]:
    out = {}
    for name in names:
        with safe_open(str(golden_dir / name), "pt") as f:
            out.update({k: tuple(f.get_slice(k).get_shape()) for k in f.keys()})
    return out


def shapes(spec: rf.Spec) -> dict[str, tuple[int, ...]]:
    return {k: shape for k, (shape, _) in spec.items()}


@pytest.mark.golden
def test_tokenizer_and_open_clip_layouts_match_the_reference(golden_dir):
    from divot.convert.tokenizer import config_from_reference

    ref = json.loads((golden_dir / "tokenizer_config.json").read_text())
    assert ref["tokenizer_config"] == paper_rehearsal.TINY_TOKENIZER_REFERENCE["tokenizer_config"]
    config = config_from_reference(ref["tokenizer_config"], ref["open_clip_vision_cfg"])
    assert shapes(rf.tokenizer_spec(config)) == golden_shapes(golden_dir, "tokenizer_official.safetensors")
    clip = golden_shapes(golden_dir, "open_clip_visual.safetensors")
    assert shapes(rf.open_clip_spec(config.frame_encoder, clip["visual.proj"][1])) == clip


@pytest.mark.golden
def test_detokenizer_layout_matches_the_reference(golden_dir):
    from divot.diffusion.config import (
        condition_config_from_reference,
        condition_preset,
        unet_config_from_reference,
        unet_preset,
        vae_config_from_reference,
        vae_preset,
    )

    ref = json.loads((golden_dir / "detokenizer_config.json").read_text())
    ddconfig = json.loads((golden_dir / "vae_config.json").read_text())["ddconfig"]
    unet, condition = unet_config_from_reference(ref["unet"]), condition_config_from_reference(ref["image_proj_model"])
    vae = vae_config_from_reference(ddconfig)
    assert (unet, condition, vae) == (unet_preset("tiny"), condition_preset("tiny"), vae_preset("tiny"))
    expected = golden_shapes(golden_dir, "detokenizer_official.safetensors", "vae_official.safetensors")
    assert shapes(rf.detokenizer_spec(unet, condition, vae)) == expected


@pytest.mark.golden
def test_llm_and_agent_layouts_match_the_reference(golden_dir):
    from divot.llm.config import BaseLLMConfig, DivotLLMConfig

    meta = json.loads((golden_dir / "agent_config.json").read_text())
    c = meta["llm_config"]
    base = BaseLLMConfig(vocab_size=c["vocab_size"], hidden_size=c["hidden_size"],
                         intermediate_size=c["intermediate_size"], num_layers=c["num_hidden_layers"],
                         num_heads=c["num_attention_heads"], num_kv_heads=c["num_key_value_heads"],
                         max_position_embeddings=c["max_position_embeddings"])
    config = DivotLLMConfig(hidden_size=c["hidden_size"], num_queries=meta["num_queries"],
                            token_dim=meta["feature_dim"], gmm_components=meta["gmm_kernels"], base=base)
    hf_config, llm, agent = rf.llm_specs(config, c["vocab_size"])
    expected = golden_shapes(golden_dir, "agent_official.safetensors")
    assert shapes(agent) == {k: v for k, v in expected.items() if not k.startswith("llm.")}
    assert shapes(llm) == {k[len("llm."):]: v for k, v in expected.items() if k.startswith("llm.")}
    assert hf_config.architectures == ["MistralForCausalLM"]


def test_paper_layouts_have_the_released_sizes():
    """The paper files (built on the meta device, nothing allocated) have the released parameter counts."""
    size = paper_rehearsal.build_size("paper", None)
    d = size.detokenizer
    detok = rf.detokenizer_spec(d.unet, d.condition, d.vae)
    unet = {k: v for k, v in detok.items() if k.startswith("diffusion_model.")}
    assert len(unet) == 1532 and rf.spec_bytes(unet) == 4 * 1_438_843_476  # the released U-Net
    assert any(".temopral_conv." in k for k in unet)  # the reference's spelling
    assert detok["first_stage_model.encoder.mid.attn_1.q.weight"][0] == (512, 512, 1, 1)
    hf_config, llm, agent = rf.llm_specs(size.llm, size.vocab_size)
    mistral_7b = 7_241_732_096  # Mistral-7B-v0.1 (vocabulary 32000); + 262 Divot rows in embed and lm_head
    assert rf.spec_bytes(llm) == 4 * (mistral_7b + 2 * 262 * 4096)
    assert hf_config.num_hidden_layers == 32 and size.vocab_size == 32262
    assert agent["output_resampler.proj.2.weight"][0] == (8208, 8208)
    clip = rf.open_clip_spec(size.tokenizer.frame_encoder, paper_rehearsal.OPEN_CLIP_EMBED_DIM["paper"])
    assert clip["visual.positional_embedding"][0] == (257, 1280) and len(clip) == 32 * 12 + 8
    assert all(k.startswith(("temporal_encoder.", "norm.", "image_proj_model.")) for k in rf.tokenizer_spec(size.tokenizer))


def test_invert_rule_round_trips_the_converter_rules():
    from divot.convert.keys import CLIP_BLOCK_RULES, RESAMPLER_RULES, rename

    assert rf.invert_rule(r"^a\.(\d+)\.b_(x|y)$", r"c.\2.d\1") == (r"^c\.(x|y)\.d(\d+)$", r"a.\g<2>.b_\g<1>")
    assert rf.invert_key("layers.3.ff.fc2.weight", RESAMPLER_RULES) == "layers.3.1.3.weight"
    assert rf.invert_key("blocks.10.attn.qkv.bias", CLIP_BLOCK_RULES) == "transformer.resblocks.10.attn.in_proj_bias"
    assert rename(rf.invert_key("pos_embed", CLIP_BLOCK_RULES), CLIP_BLOCK_RULES) == "pos_embed"
    with pytest.raises(ValueError, match="cannot invert"):
        rf.invert_rule(r"^a.*b$", "c")


def test_llm_is_written_shard_by_shard_and_loads_strictly(tmp_path):
    from divot.llm.model import load_hf_llm_strict

    size = paper_rehearsal.build_size("tiny", 3)
    hf_config, spec, _ = rf.llm_specs(size.llm, size.vocab_size)
    layer = rf.spec_bytes({k: v for k, v in spec.items() if k.startswith("model.layers.0.")})
    out = rf.write_hf_llm(hf_config, spec, tmp_path / "llm", seed=0, max_shard_bytes=layer)
    index = json.loads((out / "model.safetensors.index.json").read_text())
    files = sorted(set(index["weight_map"].values()))
    assert files == [f"model-{i:05d}-of-{len(files):05d}.safetensors" for i in range(1, len(files) + 1)]
    assert len(files) == 6  # embeddings, one per layer, the final norm, lm_head (each over the cap here)
    for i in range(3):  # a decoder layer is never split across shards
        assert len({f for k, f in index["weight_map"].items() if k.startswith(f"model.layers.{i}.")}) == 1
    llm = load_hf_llm_strict(out)
    assert llm.config.num_hidden_layers == 3 and llm.config.vocab_size == 32262
    w = llm.model.layers[1].mlp.up_proj.weight
    assert abs(w.std().item() - rf.INIT_STD) < 2e-3
    assert torch.equal(w, rf.random_tensor("model.layers.1.mlp.up_proj.weight", tuple(w.shape), w.dtype, 0))


def test_written_tokenizer_files_convert(tmp_path):
    from divot.convert.tokenizer import convert_tokenizer
    from divot.tokenizer.frame_encoder import read_checkpoint

    size = paper_rehearsal.build_size("tiny", None)
    paper_rehearsal.write_part("tokenizer", tmp_path, size, seed=0, max_shard_bytes=10**9)
    written = read_checkpoint(tmp_path / paper_rehearsal.TOKENIZER_BIN)
    assert {k: tuple(v.shape) for k, v in written.items()} == shapes(rf.tokenizer_spec(size.tokenizer))
    model = convert_tokenizer(tmp_path / paper_rehearsal.TOKENIZER_BIN, tmp_path / paper_rehearsal.CLIP_BIN,
                              size.tokenizer)
    assert torch.equal(model.spatial_norm.weight, written["norm.weight"])


def test_steps_without_their_inputs_are_skipped(tmp_path):
    out = tmp_path / "result.json"
    code = paper_rehearsal.main(["--size", "tiny", "--work", str(tmp_path / "work"), "--out", str(out),
                                 "--steps", "convert,ask"])
    record = json.loads(out.read_text())
    assert code == 1
    assert [s["name"] for s in record["steps"]] == ["convert_tokenizer", "convert_detokenizer", "convert_llm", "ask"]
    assert all(s["status"] == "skipped" for s in record["steps"])
    assert "write_tokenizer (not run, outputs missing)" in record["steps"][0]["reason"]
    assert "convert_tokenizer (skipped)" in record["steps"][1]["reason"]
    with pytest.raises(ValueError, match="unknown"):
        paper_rehearsal.main(["--size", "tiny", "--work", str(tmp_path), "--out", str(out), "--steps", "train"])


def test_a_failed_step_is_recorded_and_its_dependents_skipped(tmp_path):
    work = tmp_path / "work"
    (work / paper_rehearsal.TOKENIZER_BIN).parent.mkdir(parents=True)
    torch.save({"bogus.weight": torch.zeros(2)}, work / paper_rehearsal.TOKENIZER_BIN)
    torch.save({"visual.conv1.weight": torch.zeros(2)}, work / paper_rehearsal.CLIP_BIN)
    (work / paper_rehearsal.TOKENIZER_CONFIG).write_text(json.dumps(paper_rehearsal.TINY_TOKENIZER_REFERENCE))
    out = tmp_path / "result.json"
    code = paper_rehearsal.main(["--size", "tiny", "--work", str(work), "--out", str(out),
                                 "--steps", "convert_tokenizer,convert_detokenizer"])
    failed, skipped = json.loads(out.read_text())["steps"]
    assert code == 1
    assert failed["status"] == "failed" and failed["returncode"] != 0 and failed["peak_rss_gib"] > 0
    assert "bogus.weight" in "\n".join(failed["stderr_tail"]) and failed["reason"].startswith("exit ")
    assert skipped["status"] == "skipped" and "convert_tokenizer (failed)" in skipped["reason"]


@pytest.mark.slow
def test_the_tiny_rehearsal_runs_every_step(tmp_path):
    """Every step as a child process at tiny size: the real Mistral tokenizer, the converters, ask / eval /
    generate / story; the big files are deleted at the end (no --keep). About 3 minutes on 2 cores (a dozen
    processes, each importing torch, timm and diffusers)."""
    require_mistral_spm()
    work, out = tmp_path / "work", tmp_path / "result.json"
    code = paper_rehearsal.main(["--size", "tiny", "--work", str(work), "--out", str(out)])
    record = json.loads(out.read_text())
    failures = {s["name"]: s.get("reason") for s in record["steps"] if s["status"] != "ok"}
    assert not failures and code == 0
    names = [s["name"] for s in record["steps"]]
    assert names == ["write_tokenizer", "write_detokenizer", "write_llm", "write_text_tokenizer", "write_inputs",
                     "convert_tokenizer", "convert_detokenizer", "convert_llm", "ask", "eval_egoschema", "generate",
                     "story"]
    for step in record["steps"]:
        assert step["seconds"] > 0 and step["peak_rss_gib"] > 0.1 and step["returncode"] == 0
    steps = {s["name"]: s for s in record["steps"]}
    assert steps["write_llm"]["output_bytes"] > 4 * 2 * 32262 * 128  # embeddings + lm_head in fp32
    assert steps["convert_llm"]["command"].startswith("divot convert llm --llm-dir Divot_sft_comp/llm")
    assert record["machine"]["ram_gib"] > 0 and "commit" in record["git"] and record["options"]["size"] == "tiny"
    assert record["sizes"]["vocab"] == 32262 and record["sizes"]["llm_layers"] == 2
    assert "| convert_detokenizer | ok |" in record["markdown"]
    summary = json.loads((work / "outputs/egoschema/summary.json").read_text())
    assert summary["counts"]["answered"] == 2
    assert (work / "outputs/generate.mp4").stat().st_size > 0 and (work / "outputs/story/storyboard.html").is_file()
    assert set(record["deleted"]) >= {paper_rehearsal.TOKENIZER_BIN, paper_rehearsal.LLM_DIR, "model/llm"}
    assert not (work / paper_rehearsal.DETOKENIZER_BIN).exists() and not (work / "model/tokenizer").exists()
