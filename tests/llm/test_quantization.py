"""bitsandbytes quantization of the Divot-LLM's LLM (``DivotLLM.from_pretrained(quantization=...)``).

The first group runs a real 8-bit / 4-bit load on the CPU (bitsandbytes >= 0.46 has CPU kernels) and is skipped,
with the reason, where bitsandbytes is missing or cannot run here. The second group checks everything around it
(the config handed to transformers, the modules kept in full precision, that a quantized LLM is never moved or
cast) without bitsandbytes, with a stand-in for the quantized LLM.
"""

import functools

import pytest
import torch
from torch import nn

from divot.llm import DivotLLM, LLMCollator, SequenceBuilder, loading
from divot.llm.loading import is_placed, is_quantized, llm_load_kwargs, output_embedding_names
from tests.llm.conftest import build_tiny, clips, tiny_config

Q = 16
# Relative error ||logits_q - logits_bf16|| / ||logits_bf16|| allowed against the unquantized bf16 model (the tiny
# Mistral, hidden 64): measured 0.006-0.008 for 8-bit and 0.055 for NF4 with bitsandbytes 0.50 on a CPU.
LOGIT_TOLERANCE = {"8bit": 0.03, "4bit": 0.15}


@functools.lru_cache(maxsize=1)
def _bitsandbytes_cpu_problem() -> str | None:
    """Why bitsandbytes cannot quantize on this machine's CPU, or None when it can (8-bit and 4-bit)."""
    if not loading.is_bitsandbytes_available():
        return "bitsandbytes is not installed (pip install 'divot[quant]')"
    try:
        import bitsandbytes as bnb

        x = torch.randn(2, 64)
        for layer in (bnb.nn.Linear8bitLt(64, 64, bias=False, has_fp16_weights=False),
                      bnb.nn.Linear4bit(64, 64, bias=False, compute_dtype=torch.bfloat16, quant_type="nf4")):
            layer.load_state_dict({"weight": torch.randn(64, 64)})
            layer = layer.to("cpu")  # quantizes the weight
            layer(x.to(torch.float16 if isinstance(layer, bnb.nn.Linear8bitLt) else torch.bfloat16))
    except Exception as error:  # any failure of the library itself means "cannot run here"
        return f"bitsandbytes cannot run 8-bit / 4-bit layers on this CPU: {type(error).__name__}: {error}"
    return None


def require_bitsandbytes_cpu():
    problem = _bitsandbytes_cpu_problem()
    if problem is not None:
        pytest.skip(problem)


@pytest.fixture()
def saved(tokenizer, tmp_path):
    build_tiny(tokenizer).save_pretrained(tmp_path / "m")
    return tmp_path / "m"


def _batch(model: DivotLLM) -> dict:
    builder = SequenceBuilder.from_config(model.tokenizer, model.config)
    return LLMCollator(builder.ids.pad, Q)([builder.caption(clips(2, seed=1), "a red circle moves left"),
                                            builder.generation("a blue square grows", clips(1, seed=2))])


def _logits(model: DivotLLM, batch: dict) -> torch.Tensor:
    with torch.no_grad():
        embeds = model.embed(batch["input_ids"], batch["cmp_mask"], batch["cmp_clips"])
        return model.hidden_and_logits(embeds, batch["attention_mask_4d"])[1].float()


# -- a real quantized load on the CPU ------------------------------------------------------------------------
@pytest.mark.parametrize("quantization", ["8bit", "4bit"])
def test_quantized_llm_runs_and_keeps_the_heads_unquantized(saved, quantization):
    require_bitsandbytes_cpu()
    import bitsandbytes as bnb

    reference = DivotLLM.from_pretrained(saved, dtype=torch.bfloat16)
    model = DivotLLM.from_pretrained(saved, device="cpu", quantization=quantization)
    assert is_quantized(model.llm) and model.device == torch.device("cpu")
    quantized_type = bnb.nn.Linear8bitLt if quantization == "8bit" else bnb.nn.Linear4bit
    assert isinstance(model.llm.model.layers[0].mlp.up_proj, quantized_type)
    # lm_head (with the Divot token rows), the input projection and the GMM head stay plain float layers.
    lm_head = model.llm.get_output_embeddings()
    for layer in (lm_head, *model.input_proj, *model.gmm_head.proj):
        if isinstance(layer, nn.Linear):
            assert type(layer) is nn.Linear and layer.weight.dtype.is_floating_point
    plain = DivotLLM.from_pretrained(saved).llm.get_output_embeddings().weight  # float32, as saved
    assert torch.equal(lm_head.weight, plain.to(lm_head.weight.dtype))
    assert model.gmm_head.proj[0].weight.dtype == model.dtype == loading.QUANTIZED_DTYPES[quantization]

    batch = _batch(model)
    got, want = _logits(model, batch), _logits(reference, batch)
    assert (got - want).norm() / want.norm() < LOGIT_TOLERANCE[quantization]
    with torch.no_grad():
        losses = model(batch)
    assert all(torch.isfinite(v) for v in losses.values()) and losses["gmm_loss"] != 0
    builder = SequenceBuilder.from_config(model.tokenizer, model.config)
    ids = model.generate_ids(builder.qa_prompt(clips(1, seed=5), "what colour is the object?"), max_new_tokens=4,
                             greedy=True)
    assert 1 <= len(ids) <= 4
    tokens = model.generate_video(builder.generation_prompt("a red circle"), mode="mean").tokens
    assert tokens.shape == (1, Q, model.config.token_dim) and torch.isfinite(tokens).all()


def test_to_moves_only_the_projections_of_a_quantized_llm(saved):
    require_bitsandbytes_cpu()
    model = DivotLLM.from_pretrained(saved, device="cpu", quantization="4bit")
    model.to(torch.float32)
    model.float()
    nn.ModuleDict({"llm": model}).to("cpu", torch.float32)  # a parent's .to (Divot's) recurses the same way
    assert model.dtype == torch.bfloat16 and model.llm.get_output_embeddings().weight.dtype == torch.bfloat16
    assert model.gmm_head.proj[0].weight.dtype == model.input_proj[0].weight.dtype == torch.float32
    # float32 heads beside a bf16 LLM: they cast their inputs to their own dtype.
    with torch.no_grad():
        assert torch.isfinite(model(_batch(model))["loss"])


# -- around bitsandbytes, without it ---------------------------------------------------------------------------
@pytest.fixture()
def hf_config():
    return tiny_config().base.to_hf(vocab_size=300)


@pytest.fixture()
def pretend_bitsandbytes(monkeypatch):
    monkeypatch.setattr(loading, "require_bitsandbytes", lambda: None)


def test_4bit_is_nf4_with_bf16_compute_and_keeps_lm_head(hf_config, pretend_bitsandbytes):
    kwargs = llm_load_kwargs(hf_config, None, {"": "cpu"}, "4bit")
    q = kwargs["quantization_config"]
    assert kwargs["dtype"] == torch.bfloat16 and kwargs["device_map"] == {"": "cpu"}
    assert q.load_in_4bit and not q.load_in_8bit
    assert q.bnb_4bit_quant_type == "nf4" and q.bnb_4bit_compute_dtype == torch.bfloat16
    assert q.llm_int8_skip_modules == ["lm_head"] and not q.llm_int8_enable_fp32_cpu_offload


def test_8bit_runs_in_float16_and_offloads_to_the_cpu_in_float32(hf_config, pretend_bitsandbytes):
    kwargs = llm_load_kwargs(hf_config, None, {"model": 0, "lm_head": "cpu"}, "8bit")
    q = kwargs["quantization_config"]
    assert kwargs["dtype"] == torch.float16 and q.load_in_8bit and not q.load_in_4bit
    assert q.llm_int8_skip_modules == ["lm_head"]
    assert q.llm_int8_enable_fp32_cpu_offload  # a map that mixes an accelerator with the CPU needs it
    assert llm_load_kwargs(hf_config, torch.bfloat16, "auto", "8bit")["dtype"] == torch.bfloat16


def test_the_output_embedding_is_kept_whatever_its_name(pretend_bitsandbytes):
    """An explicit skip list replaces transformers' default one: the output embedding must be named in it."""
    from transformers import AutoConfig

    xlnet = AutoConfig.for_model("xlnet", vocab_size=64, d_model=32, n_layer=1, n_head=2, d_inner=64)
    assert output_embedding_names(xlnet) == ["lm_loss"]  # XLNet's causal-LM head
    kwargs = llm_load_kwargs(xlnet, None, "auto", "4bit")
    assert kwargs["quantization_config"].llm_int8_skip_modules == ["lm_head", "lm_loss"]


def test_no_plain_load_asks_for_quantization(hf_config):
    assert llm_load_kwargs(hf_config, None) == {"dtype": torch.float32}
    assert llm_load_kwargs(hf_config, None, "auto", max_memory={0: "20GiB"}) == {
        "dtype": torch.float32, "device_map": "auto", "max_memory": {0: "20GiB"}}


def test_bad_requests_are_refused_before_loading(saved):
    with pytest.raises(ValueError, match="quantization must be None or one of"):
        DivotLLM.from_pretrained(saved, device="cpu", quantization="3bit")
    with pytest.raises(ValueError, match="give device or device_map"):
        DivotLLM.from_pretrained(saved, quantization="4bit")


def test_missing_bitsandbytes_names_the_extra(saved, monkeypatch):
    monkeypatch.setattr(loading, "is_bitsandbytes_available", lambda: False)
    with pytest.raises(ImportError, match=r"divot\[quant\]"):
        DivotLLM.from_pretrained(saved, device="cpu", quantization="8bit")


class _NoMove(Exception):
    pass


def _pretend_quantized(llm: nn.Module) -> nn.Module:
    """Mark an LLM the way transformers marks a quantized one, and make moving or casting it fail as
    bitsandbytes does (``.to(dtype)`` / ``.float()`` raise there)."""
    llm.hf_quantizer = object()

    def refuse(fn, recurse=True):
        raise _NoMove("a quantized LLM was moved or cast")

    llm._apply = refuse
    return llm


def test_a_quantized_llm_is_never_moved_or_cast(tiny_model):
    model = tiny_model
    _pretend_quantized(model.llm)
    assert is_placed(model.llm)
    model.to(torch.float64)
    model.to(device="cpu", dtype=torch.float64)
    nn.ModuleDict({"llm": model}).to(torch.float64)  # through a parent (Divot.to)
    assert model.dtype == torch.float32
    assert all(p.dtype == torch.float64 for p in (*model.input_proj.parameters(), *model.gmm_head.parameters()))
    with torch.no_grad():  # float64 heads around a float32 LLM: the heads cast their inputs
        assert torch.isfinite(model(_batch(model))["loss"])


def test_from_pretrained_hands_the_request_to_transformers_and_never_moves_the_llm(saved, monkeypatch):
    import divot.llm.model as model_module

    calls = {}
    real = model_module.load_hf_llm_strict

    def fake_load(directory, dtype=None, **kwargs):
        calls.update(kwargs, dtype=dtype)
        return _pretend_quantized(real(directory, torch.bfloat16))

    monkeypatch.setattr(model_module, "load_hf_llm_strict", fake_load)
    model = DivotLLM.from_pretrained(saved, device="cpu", quantization="4bit")
    assert calls["device_map"] == {"": "cpu"} and calls["quantization"] == "4bit" and calls["dtype"] is None
    # The projections follow the LLM's dtype and sit beside its input embeddings / last hidden states.
    assert model.input_proj[0].weight.dtype == model.gmm_head.proj[2].weight.dtype == torch.bfloat16
    model = DivotLLM.from_pretrained(saved, device_map="auto", dtype=torch.float16, quantization="8bit")
    assert calls["device_map"] == "auto" and calls["dtype"] == torch.float16
    assert model.gmm_head.proj[0].weight.dtype == torch.float16
