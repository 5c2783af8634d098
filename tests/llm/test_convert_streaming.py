"""``convert_llm_to_dir`` (what ``divot convert llm`` runs) streams a sharded released LLM into a ``DivotLLM``
directory: the same files and the same tensors, bit for bit, as the in-memory ``convert_llm`` + ``save_pretrained``."""

import inspect
import json

import pytest
import torch
from safetensors.torch import load_file, save_file

import divot.convert.llm_stream as llm_stream
from divot.cli import main
from divot.convert.llm import convert_llm
from divot.convert.llm_stream import convert_llm_to_dir
from divot.llm import DivotLLM, SequenceBuilder
from tests.llm.conftest import build_tiny, clips, tiny_config

LLM_FILES = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json")


def write_released(model, root, **save_kwargs):
    """``model`` in the released layout: ``llm/`` (several shards by default), ``tokenizer/``, the agent .bin."""
    model.llm.save_pretrained(root / "llm", **({"max_shard_size": "100KB"} | save_kwargs))
    model.tokenizer.save_pretrained(root / "tokenizer")
    agent = {}
    for src, module in (("input_resampler.proj.", model.input_proj), ("output_resampler.proj.", model.gmm_head.proj)):
        agent.update({src + k: v.clone() for k, v in module.state_dict().items()})
    (root / "agent").mkdir()
    torch.save(agent, root / "agent" / "pytorch_model.bin")
    return root


@pytest.fixture()
def released(tokenizer, tmp_path):
    model = build_tiny(tokenizer, seed=1)
    root = write_released(model, tmp_path / "released")
    assert len(list((root / "llm").glob("model-*.safetensors"))) >= 4
    return model, root


def args(root):
    """The positional arguments of ``convert_llm_to_dir``: released folders, ``root/out``, 16 queries."""
    return root / "llm", root / "agent" / "pytorch_model.bin", root / "tokenizer", root / "out", 16


def shards(directory):
    state = {}
    for path in sorted(directory.glob("*.safetensors")):
        state.update(load_file(str(path)))
    return state


def assert_same_dir(streamed, in_memory):
    """Same config, tokenizer and generation files; every tensor equal in value and dtype."""
    assert (streamed / "config.json").read_bytes() == (in_memory / "config.json").read_bytes()
    for name in LLM_FILES:
        assert (streamed / "llm" / name).read_bytes() == (in_memory / "llm" / name).read_bytes(), name
    for got, want in ((shards(streamed / "llm"), shards(in_memory / "llm")),
                      (load_file(str(streamed / "model.safetensors")), load_file(str(in_memory / "model.safetensors")))):
        assert got.keys() == want.keys()
        for k in want:
            assert got[k].dtype == want[k].dtype and torch.equal(got[k], want[k]), k


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_streamed_equals_in_memory(released, tmp_path, dtype):
    _, root = released
    out = convert_llm_to_dir(*args(root), dtype=dtype, max_shard_bytes=30_000, progress=False)
    written = sorted(p.name for p in (out / "llm").glob("*.safetensors"))
    assert len(written) > len(list((root / "llm").glob("*.safetensors")))  # source shards split further
    index = json.loads((out / "llm" / "model.safetensors.index.json").read_text())
    assert sorted(set(index["weight_map"].values())) == written
    memory = convert_llm(root / "llm", root / "agent" / "pytorch_model.bin", root / "tokenizer", 16, dtype)
    memory.save_pretrained(tmp_path / "memory")
    assert_same_dir(out, tmp_path / "memory")
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "llm", "model.safetensors"]  # nothing staged

    loaded = DivotLLM.from_pretrained(out, dtype=dtype)
    want = memory.state_dict()
    got = loaded.state_dict()
    assert got.keys() == want.keys()
    for k in want:
        assert got[k].dtype == dtype and torch.equal(got[k], want[k]), k
    builder = SequenceBuilder.from_config(loaded.tokenizer, loaded.config)
    prompt = builder.qa_prompt(clips(1).to(dtype), "what moves?")
    assert loaded.generate_ids(prompt, max_new_tokens=6, greedy=True) == memory.generate_ids(
        prompt, max_new_tokens=6, greedy=True)
    ids = torch.tensor([builder.encode("a red circle moves left")])
    with torch.no_grad():
        assert torch.equal(loaded.llm(ids).logits, memory.llm(ids).logits)
        hidden = loaded.llm.model(ids).last_hidden_state
        assert torch.equal(loaded.gmm_head(hidden), memory.gmm_head(hidden))


def test_default_dtype_is_bfloat16(released):
    _, root = released
    assert inspect.signature(convert_llm_to_dir).parameters["dtype"].default is torch.bfloat16
    assert inspect.signature(convert_llm).parameters["dtype"].default is torch.bfloat16
    out = root / "cli"
    assert main(["convert", "llm", "--llm-dir", str(root / "llm"), "--agent-ckpt",
                 str(root / "agent" / "pytorch_model.bin"), "--tokenizer-dir", str(root / "tokenizer"),
                 "--num-queries", "16", "--out", str(out)]) == 0
    assert {v.dtype for v in shards(out / "llm").values()} == {torch.bfloat16}
    assert {v.dtype for v in load_file(str(out / "model.safetensors")).values()} == {torch.bfloat16}
    assert json.loads((out / "llm" / "config.json").read_text())["dtype"] == "bfloat16"


def edit_shard(root, edit):
    """Apply ``edit`` to the state of the shard holding the first layer's q_proj (index kept in step)."""
    index_path = root / "llm" / "model.safetensors.index.json"
    index = json.loads(index_path.read_text())
    name = index["weight_map"]["model.layers.0.self_attn.q_proj.weight"]
    state = load_file(str(root / "llm" / name))
    edit(state)
    save_file(state, str(root / "llm" / name), metadata={"format": "pt"})
    index["weight_map"] = {k: v for k, v in index["weight_map"].items() if v != name} | dict.fromkeys(state, name)
    index_path.write_text(json.dumps(index))


@pytest.mark.parametrize("edit, message", [
    (lambda s: s.pop("model.layers.0.self_attn.q_proj.weight"),
     r"missing key\(s\): model.layers.0.self_attn.q_proj.weight"),
    (lambda s: s.update({"model.layers.0.extra.weight": torch.zeros(3)}),
     r"unexpected key\(s\): model.layers.0.extra.weight"),
    (lambda s: s.update({"model.layers.0.self_attn.q_proj.weight": torch.zeros(64, 63)}),
     r"shape mismatch for 1 tensor\(s\): model.layers.0.self_attn.q_proj.weight: model \(64, 64\) vs file "
     r"\(64, 63\)"),
])
def test_bad_keys_are_named_and_nothing_is_written(released, edit, message):
    _, root = released
    edit_shard(root, edit)
    with pytest.raises(ValueError, match=message):
        convert_llm_to_dir(*args(root), progress=False)
    assert not (root / "out").exists()
    with pytest.raises((ValueError, RuntimeError)):  # the in-memory path refuses too (shapes: transformers' error)
        convert_llm(root / "llm", root / "agent" / "pytorch_model.bin", root / "tokenizer", 16)


def test_keys_transformers_ignores_are_left_out(released, tmp_path):
    _, root = released
    edit_shard(root, lambda s: s.update({"model.layers.0.self_attn.rotary_emb.inv_freq": torch.ones(8)}))
    out = convert_llm_to_dir(*args(root), progress=False)
    assert "model.layers.0.self_attn.rotary_emb.inv_freq" not in shards(out / "llm")
    convert_llm(root / "llm", root / "agent" / "pytorch_model.bin", root / "tokenizer", 16).save_pretrained(
        tmp_path / "memory")
    assert_same_dir(out, tmp_path / "memory")


def test_interrupted_write_leaves_no_half_written_output(released, monkeypatch):
    _, root = released
    real_save, calls = llm_stream.save_state_dict, []

    def failing_save(state, path, *a, **kw):
        calls.append(path)
        if len(calls) == 3:
            raise KeyboardInterrupt("interrupted")
        real_save(state, path, *a, **kw)

    monkeypatch.setattr(llm_stream, "save_state_dict", failing_save)
    with pytest.raises(KeyboardInterrupt):
        convert_llm_to_dir(*args(root), progress=False)
    out = root / "out"
    assert list(out.iterdir()) == []  # two shards were written, in a staging folder that is gone
    with pytest.raises(FileNotFoundError):
        DivotLLM.from_pretrained(out)

    monkeypatch.setattr(llm_stream, "save_state_dict", real_save)
    convert_llm_to_dir(*args(root), dtype=torch.float32, progress=False)
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    calls.clear()
    monkeypatch.setattr(llm_stream, "save_state_dict", failing_save)
    with pytest.raises(KeyboardInterrupt):  # a second conversion into the same folder, interrupted
        convert_llm_to_dir(*args(root), dtype=torch.bfloat16, progress=False)
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before  # the earlier (float32) conversion is untouched and still loads
    DivotLLM.from_pretrained(out)


def test_tied_embeddings_bin_shards_without_generation_config(tokenizer, tmp_path):
    torch.manual_seed(2)
    config = tiny_config()
    model = DivotLLM.from_llm(config.base.to_hf(vocab_size=len(tokenizer), tie_word_embeddings=True), tokenizer,
                              config).eval()
    root = write_released(model, tmp_path / "released")
    for path in (root / "llm").glob("model*.safetensors*"):  # the same weights as two .bin shards
        path.unlink()
    state = model.llm.state_dict()
    state.pop("lm_head.weight")  # tied: transformers does not save it
    keys = list(state)
    parts = {"pytorch_model-00001-of-00002.bin": keys[: len(keys) // 2],
             "pytorch_model-00002-of-00002.bin": keys[len(keys) // 2:]}
    for name, part in parts.items():
        torch.save({k: state[k].clone() for k in part}, root / "llm" / name)
    index = {"metadata": {"total_size": sum(v.nbytes for v in state.values())},
             "weight_map": {k: name for name, part in parts.items() for k in part}}
    (root / "llm" / "pytorch_model.bin.index.json").write_text(json.dumps(index))
    (root / "llm" / "generation_config.json").unlink()
    out = convert_llm_to_dir(*args(root), progress=False)
    assert "lm_head.weight" not in shards(out / "llm")
    memory = convert_llm(root / "llm", root / "agent" / "pytorch_model.bin", root / "tokenizer", 16)
    memory.save_pretrained(tmp_path / "memory")
    assert_same_dir(out, tmp_path / "memory")
    loaded = DivotLLM.from_pretrained(out, dtype=torch.bfloat16)
    assert loaded.llm.lm_head.weight is loaded.llm.get_input_embeddings().weight
    ids = torch.tensor([[1, 5, 9, 13]])
    with torch.no_grad():
        assert torch.equal(loaded.llm(ids).logits, memory.llm(ids).logits)


def test_tokenizer_larger_than_the_embeddings_is_rejected(tokenizer, tmp_path):
    from divot.llm.tokens import add_special_tokens

    model = build_tiny(tokenizer, seed=3)
    root = write_released(model, tmp_path / "released")
    add_special_tokens(model.tokenizer)
    model.tokenizer.add_tokens(["<extra_a>", "<extra_b>"])
    model.tokenizer.save_pretrained(root / "tokenizer")
    with pytest.raises(ValueError, match=r"has \d+ tokens but the LLM in .* has \d+ embedding rows"):
        convert_llm_to_dir(*args(root), progress=False)
    assert not (root / "out").exists()
