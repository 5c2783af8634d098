import json

import pytest
import torch
from safetensors.torch import load_file

from divot.convert.detokenizer import convert_detokenizer_state
from divot.diffusion.condition import ConditionResampler
from divot.diffusion.config import (
    ConditionResamplerConfig,
    UNetConfig,
    VAEConfig,
    condition_config_from_reference,
    condition_preset,
    unet_config_from_reference,
    unet_preset,
    vae_config_from_reference,
)
from divot.diffusion.unet import VideoUNet
from divot.diffusion.vae import build_vae


def test_paper_unet_has_the_released_tensor_and_parameter_counts():
    with torch.device("meta"):
        unet = VideoUNet(unet_preset("paper"))
    state = unet.state_dict()
    assert len(state) == 1532
    assert sum(v.numel() for v in state.values()) == 1_438_843_476
    assert not any("temopral" in k for k in state)
    # No buffers: everything in the state dict is a parameter.
    assert len(list(unet.parameters())) == 1532


def test_paper_condition_resampler_shape():
    cfg = condition_preset("paper")
    with torch.device("meta"):
        model = ConditionResampler(cfg)
        out = model(torch.empty(2, 64, cfg.input_dim))
    assert out.shape == (2, 125, 1024)
    with pytest.raises(ValueError, match="tokens must be"):
        with torch.device("meta"):
            model(torch.empty(2, 64, cfg.input_dim + 1))


def test_unknown_preset_names_the_choices():
    with pytest.raises(ValueError, match="paper"):
        unet_preset("huge")


def test_reference_names_map_to_our_fields():
    """Every renamed reference argument lands in its field (distinct values, so a swapped pair would show)."""
    unet = unet_config_from_reference({
        "in_channels": 5, "out_channels": 6, "model_channels": 64, "channel_mult": [1, 3],
        "num_res_blocks": 3, "attention_resolutions": [2], "num_head_channels": 32, "context_dim": 48,
        "transformer_depth": 2, "dropout": 0.25, "use_linear": False, "temporal_conv": False,
        "temporal_attention": False, "addition_attention": False, "image_cross_attention": False,
        "image_cross_attention_scale_learnable": False, "temporal_length": 7, "default_fs": 9,
        "fs_condition": False, "use_checkpoint": True})
    assert unet == UNetConfig(in_channels=5, out_channels=6, model_channels=64, channel_mult=(1, 3),
                              num_res_blocks=3, attention_resolutions=(2,), head_dim=32, context_dim=48,
                              transformer_depth=2, dropout=0.25, use_linear=False, temporal_conv=False,
                              temporal_attention=False, init_attention=False, image_cross_attention=False,
                              image_gate_learnable=False, num_frames=7, default_fs=9, fs_condition=False)
    condition = condition_config_from_reference({"dim": 40, "depth": 3, "dim_head": 8, "heads": 5,
                                                 "num_queries": 11, "embedding_dim": 24, "output_dim": 56})
    assert condition == ConditionResamplerConfig(dim=40, depth=3, head_dim=8, num_heads=5, num_queries=11,
                                                 input_dim=24, output_dim=56)
    vae = vae_config_from_reference({"double_z": True, "z_channels": 8, "resolution": 64, "in_channels": 3,
                                     "out_ch": 3, "ch": 64, "ch_mult": [1, 2, 2], "num_res_blocks": 2,
                                     "attn_resolutions": [], "dropout": 0.0}, scale_factor=0.5)
    assert vae == VAEConfig(in_channels=3, out_channels=3, ch=64, ch_mult=(1, 2, 2), num_res_blocks=2,
                            z_channels=8, resolution=64, scale_factor=0.5)
    assert vae.block_out_channels == (64, 128, 128) and vae.downsample_factor == 4


@pytest.mark.golden
def test_golden_configs_build_the_checkpoint_layout(golden_dir, detok_meta):
    """The configs translated from the golden JSON build modules with exactly the checkpoint's tensors and
    shapes (checked apart from the numerics, so a translation error is named as such)."""
    unet_cfg = unet_config_from_reference(detok_meta["unet"])
    cond_cfg = condition_config_from_reference(detok_meta["image_proj_model"])
    vae_meta = json.loads((golden_dir / "vae_config.json").read_text())
    vae_cfg = vae_config_from_reference(vae_meta["ddconfig"], vae_meta["scale_factor"])
    state = load_file(str(golden_dir / "detokenizer_official.safetensors"))
    state.update(load_file(str(golden_dir / "vae_official.safetensors")))
    parts = convert_detokenizer_state(state, vae_cfg)
    with torch.device("meta"):
        modules = {"unet": VideoUNet(unet_cfg), "condition": ConditionResampler(cond_cfg),
                   "vae": build_vae(vae_cfg)}
    for name, module in modules.items():
        ours = {k: tuple(v.shape) for k, v in module.state_dict().items()}
        theirs = {k: tuple(v.shape) for k, v in parts[name].items()}
        assert ours == theirs, name


def test_reference_switches_we_do_not_implement_are_rejected():
    with pytest.raises(ValueError, match="use_relative_position"):
        unet_config_from_reference({"model_channels": 32, "use_relative_position": True})
    with pytest.raises(ValueError, match="unknown reference U-Net argument 'foo'"):
        unet_config_from_reference({"foo": 1})
    with pytest.raises(ValueError, match="num_head_channels"):
        unet_config_from_reference({"num_head_channels": -1})
    with pytest.raises(ValueError, match="attention at resolutions"):
        vae_config_from_reference({"ch": 32, "ch_mult": [1, 2], "num_res_blocks": 1, "attn_resolutions": [16]})
    with pytest.raises(ValueError, match="unknown reference resampler"):
        condition_config_from_reference({"dim": 8, "bogus": 1})


def test_config_validates_widths():
    with pytest.raises(ValueError, match="multiple of 32"):
        UNetConfig(model_channels=48, channel_mult=(1,))
    with pytest.raises(ValueError, match="head_dim"):
        UNetConfig(model_channels=32, channel_mult=(1,), head_dim=24)


def test_derived_numbers():
    cfg = unet_preset("paper")
    assert cfg.time_embed_dim == 1280
    assert cfg.level_channels == (320, 640, 1280, 1280)
    assert cfg.downsample_factor == 8
    assert cfg.num_heads(640) == 10
