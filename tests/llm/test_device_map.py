"""``DivotLLM.from_pretrained(device_map=...)``: an LLM spread over devices (here the CPU and accelerate's
CPU / disk offload, whose weights sit on "meta" and move in for each forward) gives the same numbers as a plain
load, and is never moved afterwards."""

import pytest
import torch

from divot.llm import DivotLLM, LLMCollator, SequenceBuilder
from divot.llm.loading import execution_device, is_dispatched, is_placed
from tests.llm.conftest import build_tiny, clips

Q = 16
# The tiny Mistral's modules spread over the CPU and the disk: the input embeddings and the output embedding
# are offloaded (their weights are on "meta"), so nothing may read a device or dtype from a weight.
SPREAD = {"model.embed_tokens": "disk", "model.layers.0": "cpu", "model.layers.1": "disk", "model.norm": "cpu",
          "model.rotary_emb": "cpu", "lm_head": "disk"}


@pytest.fixture()
def saved(tokenizer, tmp_path):
    model = build_tiny(tokenizer)
    model.save_pretrained(tmp_path / "m")
    return tmp_path / "m"


def _batch(model: DivotLLM) -> dict:
    builder = SequenceBuilder.from_config(model.tokenizer, model.config)
    samples = [builder.caption(clips(2, seed=1), "a red circle moves left"),
               builder.generation_instruction("a blue square grows", clips(1, seed=2), template="Show me a video of")]
    return LLMCollator(builder.ids.pad, Q)(samples)


def _outputs(model: DivotLLM) -> dict:
    """Losses, greedy text ids, GMM tokens and continuation scores: everything that crosses the LLM."""
    builder = SequenceBuilder.from_config(model.tokenizer, model.config)
    with torch.no_grad():
        losses = model(_batch(model))
    prompt = builder.qa_prompt(clips(1, seed=5), "what colour is the object?")
    return {
        **losses,
        "text_ids": torch.tensor(model.generate_ids(prompt, max_new_tokens=6, greedy=True)),
        "video": model.generate_video(builder.generation_prompt("a red circle"), num_clips=2, mode="mean").tokens,
        "sampled": model.generate_video(builder.generation_prompt("a red circle"), mode="sample",
                                        generator=torch.Generator(model.device).manual_seed(0)).tokens,
        "scores": model.score_continuations(prompt, ["red", "blue square"]),
    }


@pytest.mark.parametrize("device_map, extra", [
    ({"": "cpu"}, {}),
    (SPREAD, {"offload": True}),
    ("auto", {"offload": True, "max_memory": {"cpu": "20KB"}}),  # too small for anything: all to disk
], ids=["single", "dict-cpu-disk", "auto-max-memory"])
def test_device_map_matches_a_plain_load(saved, tmp_path, device_map, extra):
    plain = DivotLLM.from_pretrained(saved)
    kwargs = {"max_memory": extra["max_memory"]} if "max_memory" in extra else {}
    if extra.get("offload"):
        kwargs["offload_folder"] = tmp_path / "offload"
    placed = DivotLLM.from_pretrained(saved, device_map=device_map, **kwargs)
    assert placed.device == torch.device("cpu")  # the execution device, not "meta"
    if extra.get("offload"):
        assert is_dispatched(placed.llm)
        assert placed.llm.get_input_embeddings().weight.device.type == "meta"
        assert execution_device(placed.llm.get_output_embeddings()) == torch.device("cpu")
    for module in (placed.input_proj, placed.gmm_head):
        assert all(p.device.type == "cpu" and p.dtype == torch.float32 for p in module.parameters())
    want, got = _outputs(plain), _outputs(placed)
    for key in want:
        assert torch.allclose(want[key].float(), got[key].float(), atol=1e-5), key


def test_a_dispatched_llm_is_never_moved_only_the_projections(saved, tmp_path):
    model = DivotLLM.from_pretrained(saved, device_map=SPREAD, offload_folder=tmp_path / "offload")
    assert is_placed(model.llm)
    layer0 = model.llm.model.layers[0].mlp.up_proj.weight
    model.to(torch.float64)
    model.to("cpu")
    model.float()
    # The LLM kept its weights (the same tensors, on the same devices, in float32); the projections followed.
    assert model.llm.model.layers[0].mlp.up_proj.weight is layer0 and layer0.dtype == torch.float32
    assert model.llm.get_input_embeddings().weight.device.type == "meta"
    assert all(p.dtype == torch.float32 for p in model.gmm_head.parameters())
    model.to(torch.float64)
    assert all(p.dtype == torch.float64 for p in model.input_proj.parameters())
    # Heads in float64 beside a float32 LLM still run: they cast their inputs to their own dtype.
    builder = SequenceBuilder.from_config(model.tokenizer, model.config)
    tokens = model.generate_video(builder.generation_prompt("a red circle"), mode="mean").tokens
    assert tokens.shape == (1, Q, model.config.token_dim) and torch.isfinite(tokens).all()
    with torch.no_grad():
        assert torch.isfinite(model(_batch(model))["loss"])


def test_a_plain_llm_still_moves_and_casts(saved):
    model = DivotLLM.from_pretrained(saved, device="cpu", dtype=torch.bfloat16)
    assert not is_placed(model.llm)
    assert model.dtype == torch.bfloat16 and model.gmm_head.proj[0].weight.dtype == torch.bfloat16
    model.to(torch.float32)
    assert model.dtype == torch.float32 and model.input_proj[0].weight.dtype == torch.float32


def test_device_and_device_map_together_are_refused(saved):
    with pytest.raises(ValueError, match="give device or device_map, not both"):
        DivotLLM.from_pretrained(saved, device="cpu", device_map="auto")
