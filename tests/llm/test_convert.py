"""``divot convert llm`` end to end on a fake released checkpoint (merged llm/ + agent .bin + tokenizer)."""

import pytest
import torch

from divot.cli import main
from divot.convert.llm import convert_agent_state, convert_llm
from divot.llm import DivotLLM, LLMCollator, SequenceBuilder
from tests.llm.conftest import build_tiny, clips


@pytest.fixture()
def released(tokenizer, tmp_path):
    """A tiny model written the way the reference releases it."""
    model = build_tiny(tokenizer, seed=1)
    model.llm.save_pretrained(tmp_path / "llm")
    model.tokenizer.save_pretrained(tmp_path / "tokenizer")
    agent = {}
    for src, module in (("input_resampler.proj.", model.input_proj), ("output_resampler.proj.", model.gmm_head.proj)):
        agent.update({src + k: v.clone() for k, v in module.state_dict().items()})
    (tmp_path / "agent").mkdir()
    torch.save(agent, tmp_path / "agent" / "pytorch_model.bin")
    return model, tmp_path


@pytest.mark.parametrize("dtype", [None, "float32"])
def test_convert_cli_end_to_end(released, dtype):
    model, root = released
    out = root / "converted"
    assert main(["convert", "llm", "--llm-dir", str(root / "llm"), "--agent-ckpt",
                 str(root / "agent" / "pytorch_model.bin"), "--tokenizer-dir", str(root / "tokenizer"),
                 "--num-queries", "16", "--out", str(out)] + (["--dtype", dtype] if dtype else [])) == 0
    if dtype is None:  # bfloat16 by default: the float32 model rounded to it is what was written
        model = model.to(torch.bfloat16).float()
    loaded = DivotLLM.from_pretrained(out)  # float32
    cfg = loaded.config
    assert (cfg.hidden_size, cfg.token_dim, cfg.gmm_components, cfg.num_queries) == (64, 32, 4, 16)
    builder = SequenceBuilder.from_config(loaded.tokenizer, cfg)
    batch = LLMCollator(builder.ids.pad, 16)([builder.caption(clips(1), "a red circle"),
                                              builder.generation("a blue square", clips(1, seed=1))])
    with torch.no_grad():
        want, got = model(batch), loaded(batch)
    for k in want:
        assert torch.equal(want[k], got[k]), k


def test_convert_accepts_safetensors(released, tmp_path):
    from safetensors.torch import save_file

    model, root = released
    state = torch.load(root / "agent" / "pytorch_model.bin", weights_only=True)
    save_file(state, str(tmp_path / "agent.safetensors"))
    again = convert_llm(root / "llm", tmp_path / "agent.safetensors", root / "tokenizer", num_queries=16,
                        dtype=torch.float32)
    assert torch.equal(again.gmm_head.proj[2].weight, model.gmm_head.proj[2].weight)


def test_missing_agent_keys_are_named(released, tmp_path):
    model, root = released
    state = torch.load(root / "agent" / "pytorch_model.bin", weights_only=True)
    state.pop("output_resampler.proj.2.bias")
    state["extra.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "bad.bin")
    with pytest.raises(ValueError, match=r"missing key\(s\): output_resampler.proj.2.bias"):
        convert_llm(root / "llm", tmp_path / "bad.bin", root / "tokenizer", num_queries=16)
    assert main(["convert", "llm", "--llm-dir", str(root / "llm"), "--agent-ckpt", str(tmp_path / "bad.bin"),
                 "--tokenizer-dir", str(root / "tokenizer"), "--out", str(tmp_path / "o")]) == 2
    with pytest.raises(ValueError, match=r"unexpected key\(s\): extra.weight"):
        convert_agent_state({**state, "output_resampler.proj.2.bias": torch.zeros(260)})


def test_tokenizer_without_divot_tokens_is_rejected(released, tmp_path):
    from divot.llm import train_text_tokenizer
    from divot.llm.text_tokenizer import shapes_world_texts

    _, root = released
    train_text_tokenizer(shapes_world_texts(), tmp_path / "plain", add_divot_tokens=False)
    with pytest.raises(ValueError, match="lacks 262 of the 262 Divot tokens"):
        convert_llm(root / "llm", root / "agent" / "pytorch_model.bin", tmp_path / "plain", num_queries=16)
