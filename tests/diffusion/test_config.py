import json

import pytest
import torch

from divot.diffusion.condition import ConditionResampler
from divot.diffusion.config import (
    UNetConfig,
    condition_config_from_reference,
    condition_preset,
    unet_config_from_reference,
    unet_preset,
    vae_config_from_reference,
)
from divot.diffusion.unet import VideoUNet


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


@pytest.mark.golden
def test_golden_reference_dicts_translate_to_the_tiny_presets(golden_dir):
    meta = json.loads((golden_dir / "detokenizer_config.json").read_text())
    unet = unet_config_from_reference(meta["unet"])
    assert unet.model_channels == meta["unet"]["model_channels"]
    assert unet.head_dim == meta["unet"]["num_head_channels"]
    assert unet.init_attention and unet.image_cross_attention and unet.fs_condition
    assert unet == unet_preset("tiny")
    assert condition_config_from_reference(meta["image_proj_model"]) == condition_preset("tiny")
    vae_meta = json.loads((golden_dir / "vae_config.json").read_text())
    vae = vae_config_from_reference(vae_meta["ddconfig"], vae_meta["scale_factor"])
    assert vae.block_out_channels == tuple(vae_meta["ddconfig"]["ch"] * m for m in vae_meta["ddconfig"]["ch_mult"])


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
