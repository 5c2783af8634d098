"""Equivalence with the reference de-tokenizer (U-Net + condition resampler) and the converter's strictness."""

import json

import pytest
import torch
from safetensors.torch import load_file

from divot.convert.detokenizer import convert_detokenizer, convert_detokenizer_state
from divot.diffusion.config import (
    condition_config_from_reference,
    unet_config_from_reference,
    vae_config_from_reference,
)
from divot.diffusion.schedule import make_alphas_cumprod

pytestmark = pytest.mark.golden


def test_condition_resampler_context_matches_reference(golden_detokenizer, detok_io):
    with torch.no_grad():
        context = golden_detokenizer.condition(detok_io["features"])
    assert context.shape == detok_io["context"].shape
    assert (context - detok_io["context"]).abs().max() <= 1e-4


def test_unet_model_output_matches_reference(golden_detokenizer, detok_io):
    with torch.no_grad():
        out = golden_detokenizer.unet(detok_io["x_t"], detok_io["timestep"], detok_io["context"], fs=detok_io["fs"])
    assert out.shape == detok_io["model_output"].shape
    assert (out - detok_io["model_output"]).abs().max() <= 1e-4


def _configs(meta):
    return unet_config_from_reference(meta["unet"]), condition_config_from_reference(meta["image_proj_model"])


def test_converter_names_missing_and_unexpected_keys(golden_dir, detok_meta):
    unet_cfg, cond_cfg = _configs(detok_meta)
    state = load_file(str(golden_dir / "detokenizer_official.safetensors"))
    # A misspelled reference name if the U-Net has temporal convs (the rename is then checked too).
    weights = [k for k, v in state.items() if k.startswith("diffusion_model.") and v.numel() > 1]
    missing = next((k for k in weights if ".temopral_conv." in k), weights[-1])
    broken = {k: v for k, v in state.items() if k != missing}
    renamed = missing[len("diffusion_model."):].replace("temopral_conv", "temporal_conv")
    with pytest.raises(ValueError, match=f"missing key.*{renamed}"):
        convert_detokenizer(broken, unet_cfg, cond_cfg)
    with pytest.raises(ValueError, match="unexpected key.*bogus.weight"):
        convert_detokenizer({**state, "bogus.weight": torch.zeros(1)}, unet_cfg, cond_cfg)
    with pytest.raises(ValueError, match="unexpected key.*extra_layer.bias"):
        convert_detokenizer({**state, "diffusion_model.extra_layer.bias": torch.zeros(1)}, unet_cfg, cond_cfg)
    with pytest.raises(ValueError, match="unexpected key.*layers.0.9.weight"):
        convert_detokenizer({**state, "image_proj_model.layers.0.9.weight": torch.zeros(1)}, unet_cfg, cond_cfg)
    with pytest.raises(ValueError, match="shape mismatch"):
        convert_detokenizer({**state, missing: torch.zeros(1)}, unet_cfg, cond_cfg)
    with pytest.raises(ValueError, match="no image_proj_model"):
        convert_detokenizer({k: v for k, v in state.items() if k.startswith("diffusion_model.")}, unet_cfg, cond_cfg)
    with pytest.raises(ValueError, match="no first_stage_model"):
        convert_detokenizer(state, unet_cfg, cond_cfg, require_vae=True)


def test_converter_checks_schedule_buffers_and_skips_declared_parts(golden_dir, golden_schedule):
    state = load_file(str(golden_dir / "detokenizer_official.safetensors"))
    abar = make_alphas_cumprod(golden_schedule).float()
    extra = {"alphas_cumprod": abar, "betas": torch.zeros_like(abar),
             "video_tokenizer.norm.weight": torch.ones(4)}
    parts = convert_detokenizer_state({**state, **extra}, schedule=golden_schedule)
    assert set(parts) == {"unet", "condition"}
    with pytest.raises(ValueError, match="alphas_cumprod"):
        convert_detokenizer_state({**state, "alphas_cumprod": abar.flip(0)}, schedule=golden_schedule)
    with pytest.raises(ValueError, match="unexpected key.*cond_stage_model"):
        convert_detokenizer_state({**state, "cond_stage_model.w": torch.zeros(1)}, schedule=golden_schedule)
    assert "unet" in convert_detokenizer_state({**state, "cond_stage_model.w": torch.zeros(1)},
                                               schedule=golden_schedule,
                                               ignore_prefixes=("cond_stage_model.",))


def test_converter_reads_bin_pickles_and_the_vae(golden_dir, detok_meta, detok_io, golden_detokenizer, tmp_path):
    unet_cfg, cond_cfg = _configs(detok_meta)
    vae_meta = json.loads((golden_dir / "vae_config.json").read_text())
    vae_cfg = vae_config_from_reference(vae_meta["ddconfig"], vae_meta["scale_factor"])
    state = load_file(str(golden_dir / "detokenizer_official.safetensors"))
    state.update(load_file(str(golden_dir / "vae_official.safetensors")))
    ckpt = tmp_path / "detokenizer.bin"
    torch.save(state, ckpt)
    converted = convert_detokenizer(ckpt, unet_cfg, cond_cfg, vae_cfg, require_vae=True)
    assert converted.vae is not None
    with torch.no_grad():
        assert torch.equal(converted.condition(detok_io["features"]),
                           golden_detokenizer.condition(detok_io["features"]))
    ours = converted.unet.state_dict()
    for k, v in golden_detokenizer.unet.state_dict().items():
        assert torch.equal(ours[k], v)
    vae_io = load_file(str(golden_dir / "vae_io.safetensors"))
    with torch.no_grad():
        assert (converted.vae.decode(vae_io["latents"]).sample - vae_io["decoded"]).abs().max() <= 1e-5


def test_converter_casts_to_the_requested_dtype(golden_dir, detok_meta, detok_io):
    unet_cfg, cond_cfg = _configs(detok_meta)
    converted = convert_detokenizer(golden_dir / "detokenizer_official.safetensors", unet_cfg, cond_cfg,
                                    dtype=torch.bfloat16)
    assert {p.dtype for p in converted.unet.parameters()} == {torch.bfloat16}
    with torch.no_grad():
        out = converted.unet(detok_io["x_t"].bfloat16(), detok_io["timestep"], detok_io["context"].bfloat16(),
                             fs=detok_io["fs"])
    assert out.dtype == torch.bfloat16
    expected = detok_io["model_output"]
    assert (out.float() - expected).norm() / expected.norm() < 0.05
