"""Equivalence with the reference Divot-LLM head: sizes from agent_config.json, folder from DIVOT_GOLDEN_DIR."""

import json

import pytest
import torch
from safetensors.torch import load_file

from divot.constants import FRAME_END, FRAME_START, VID_END, VID_START, frame_token
from divot.convert.llm import config_from_agent_state, convert_agent_state
from divot.hub import load_state_dict_strict
from divot.llm import (
    DivotLLM,
    build_attention_mask_4d,
    gmm_nll,
    gmm_predict,
    reference_mask_to_4d,
    split_gmm_params,
)

pytestmark = pytest.mark.golden
TOL = 1e-5


@pytest.fixture(scope="module")
def golden(golden_dir):
    meta = json.loads((golden_dir / "agent_config.json").read_text())
    io = load_file(str(golden_dir / "agent_io.safetensors"))
    weights = load_file(str(golden_dir / "agent_official.safetensors"))
    return meta, io, weights


def build_reference_model(meta, weights, attn_implementation: str) -> DivotLLM:
    from transformers import AutoConfig, AutoModelForCausalLM

    llm_config = {k: v for k, v in meta["llm_config"].items() if k not in ("transformers_version", "model_type")}
    hf_config = AutoConfig.for_model(meta["llm_config"]["model_type"], **llm_config)
    hf_config._attn_implementation = attn_implementation
    llm = AutoModelForCausalLM.from_config(hf_config)
    load_state_dict_strict(llm, {k[len("llm."):]: v for k, v in weights.items() if k.startswith("llm.")},
                           "golden llm.*")
    config = config_from_agent_state(weights, num_queries=meta["num_queries"])
    model = DivotLLM(config, llm)
    load_state_dict_strict(model.projections(), convert_agent_state(weights), "golden agent")
    return model.eval()


def test_sizes_inferred_from_weights(golden):
    meta, _, weights = golden
    config = config_from_agent_state(weights, num_queries=meta["num_queries"])
    assert (config.token_dim, config.gmm_components, config.hidden_size) == (
        meta["feature_dim"], meta["gmm_kernels"], meta["llm_config"]["hidden_size"])
    assert config.out_dim == 2 * meta["gmm_kernels"] * meta["feature_dim"] + meta["gmm_kernels"]


def test_golden_sequences_have_our_clip_layout(golden):
    """The reference ids (agent_config.json token_ids, under our token names) in the layout SequenceBuilder
    writes: <vid>, then per clip <frame> + q frame tokens + </frame>, then </vid>; the clip masks mark exactly
    the frame tokens, clip after clip; the -1 entries of the reference's 2D mask are the query positions."""
    meta, io, _ = golden
    ids, q = meta["token_ids"], meta["num_queries"]
    llm = meta["llm_config"]
    assert (ids["bos"], ids["eos"]) == (llm["bos_token_id"], llm["eos_token_id"])
    frames = [ids.get(frame_token(i), ids[frame_token(0)] + i) for i in range(q)]  # consecutive ids
    clip = [ids[FRAME_START], *frames, ids[FRAME_END]]
    for case, kind in (("comp", "cmp"), ("gen", "gen")):
        rows = zip(io[f"{case}.input_ids"].tolist(), io[f"{case}.ids_{kind}_mask"].tolist(),
                   io[f"{case}.embeds_{kind}_mask"].sum(1).tolist(), strict=True)
        for seq, mask, num_clips in rows:
            assert seq[0] == ids["bos"] and ids["eos"] in seq
            start, end = seq.index(ids[VID_START]), seq.index(ids[VID_END])
            assert seq[start + 1:end] == clip * num_clips, (case, seq)
            first = [start + 1 + c * len(clip) + 1 for c in range(num_clips)]
            assert [i for i, m in enumerate(mask) if m] == [f + j for f in first for j in range(q)]
    assert torch.equal(io["gen.attention_mask"] == -1, io["gen.ids_gen_mask"])


def golden_batch(io, case: str, q: int) -> dict:
    cmp_clips = io[f"{case}.video_embeds"][io[f"{case}.embeds_cmp_mask"]]  # (n_cmp, q, d)
    batch = {"input_ids": io[f"{case}.input_ids"], "labels": io[f"{case}.labels"],
             "cmp_mask": io[f"{case}.ids_cmp_mask"], "cmp_clips": cmp_clips}
    if case == "gen":
        batch["gen_mask"] = io["gen.ids_gen_mask"]
        batch["gen_clips"] = io["gen.video_embeds"][io["gen.embeds_gen_mask"]]
        batch["attention_mask_4d"] = reference_mask_to_4d(io["gen.attention_mask"], block_size=q)
    else:
        batch["attention_mask_4d"] = build_attention_mask_4d(io["comp.attention_mask"])
    return batch


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("case", ["comp", "gen"])
def test_losses_match_reference(golden, case, attn):
    meta, io, weights = golden
    model = build_reference_model(meta, weights, attn)
    with torch.no_grad():
        out = model(golden_batch(io, case, meta["num_queries"]))
    for name, key in (("loss", "total_loss"), ("lm_loss", "lm_loss"), ("gmm_loss", "gmm_loss")):
        ref = io[f"{case}.out.{key}"].item()
        assert abs(out[name].item() - ref) <= TOL, (case, name, out[name].item(), ref)
        assert abs(ref - meta["results"][f"{case}.{key}"]) <= TOL


def test_4d_mask_matches_reference(golden):
    meta, io, _ = golden
    ref = io["gen.attention_mask_4d"]
    assert torch.equal(reference_mask_to_4d(io["gen.attention_mask"]), ref)
    assert torch.equal(reference_mask_to_4d(io["gen.attention_mask"], block_size=meta["num_queries"]), ref)
    ours = build_attention_mask_4d(io["gen.attention_mask"] != 0, io["gen.ids_gen_mask"], meta["num_queries"])
    assert torch.equal(ours, ref)


def test_gmm_nll_and_mean_prediction_match_reference(golden):
    meta, io, _ = golden
    k, d = meta["gmm_kernels"], meta["feature_dim"]
    nll = gmm_nll(io["gmm.params"], io["gmm.targets"], k)
    assert abs(nll.item() - io["gmm.nll"].item()) <= TOL
    mean = gmm_predict(split_gmm_params(io["gmm.params"], k, d), "mean")
    assert mean.shape == io["gmm.mean_prediction"].shape
    assert (mean - io["gmm.mean_prediction"]).abs().max().item() <= TOL
