"""The U-Net on random tiny weights: shapes, conditioning paths, checkpointing, save/load, bad input."""

import dataclasses

import pytest
import torch

from divot.diffusion.config import unet_preset
from divot.diffusion.unet import VideoUNet


def randomise(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random values everywhere (zero-initialised parts too) so every path reaches the output."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    return module


def tiny(**overrides) -> VideoUNet:
    cfg = dataclasses.replace(unet_preset("tiny"), temporal_conv_dropout=0.0, **overrides)
    return randomise(VideoUNet(cfg)).eval()


def inputs(cfg, b=2, t=3, side=8, m=80, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, cfg.in_channels, t, side, side, generator=g)
    context = torch.randn(b, m, cfg.context_dim, generator=g)
    return x, torch.tensor([10, 900])[:b], context


def test_output_shape_and_default_fs():
    unet = tiny()
    x, t, context = inputs(unet.config)
    with torch.no_grad():
        y = unet(x, t, context)
        y_fs = unet(x, t, context, fs=torch.full((2,), unet.config.default_fs))
        y_other = unet(x, t, context, fs=7)
    assert y.shape == x.shape
    assert torch.equal(y, y_fs)
    assert not torch.allclose(y, y_other)


def test_samples_in_a_batch_are_independent():
    unet = tiny()
    x, t, context = inputs(unet.config)
    with torch.no_grad():
        both = unet(x, t, context)
        first = unet(x[:1], t[:1], context[:1])
    assert torch.allclose(both[:1], first, atol=1e-5)


def test_image_branch_uses_tokens_after_the_text_length():
    unet = tiny()
    x, t, context = inputs(unet.config)
    text_len = unet.config.text_context_len
    changed = context.clone()
    changed[:, text_len:] += 1.0
    # The same weights without the image branch: what the text tokens alone give.
    text_only = tiny(image_cross_attention=False)
    text_only.load_state_dict({k: v for k, v in unet.state_dict().items()
                               if not any(part in k for part in ("to_k_ip", "to_v_ip", ".alpha"))})
    with torch.no_grad():
        y, y_changed = unet(x, t, context), unet(x, t, changed)
        # Only text tokens: the image branch adds nothing, as in the reference.
        y_text, want = unet(x, t, context[:, :text_len]), text_only(x, t, context[:, :text_len])
    assert not torch.allclose(y, y_changed)
    assert torch.equal(y_text, want)
    assert not torch.allclose(y, want)  # with image tokens the branch does add to the text-only output


def test_frames_interact_through_temporal_layers():
    unet = tiny()
    x, t, context = inputs(unet.config)
    changed = x.clone()
    changed[:, :, -1] += 1.0
    with torch.no_grad():
        y, y_changed = unet(x, t, context), unet(changed, t, context)
    assert not torch.allclose(y[:, :, 0], y_changed[:, :, 0])


def test_switches_remove_their_modules():
    cfg = dataclasses.replace(unet_preset("tiny"), temporal_conv=False, temporal_attention=False,
                              init_attention=False, fs_condition=False, image_cross_attention=False)
    keys = VideoUNet(cfg).state_dict().keys()
    for part in ("temporal_conv", "init_attn", "fps_embedding", "to_k_ip", "alpha", ".2.transformer_blocks"):
        assert not any(part in k for k in keys), part
    x, t, context = inputs(cfg)
    with torch.no_grad():
        assert VideoUNet(cfg)(x, t, context).shape == x.shape


def test_gradient_checkpointing_gives_the_same_gradients():
    unet = tiny().train()
    x, t, context = inputs(unet.config, b=1, t=2)

    def grads():
        unet.zero_grad()
        unet(x, t[:1], context).square().mean().backward()
        return [p.grad.clone() for p in unet.parameters()]

    plain = grads()
    unet.set_gradient_checkpointing(True)
    checked = grads()
    for a, b in zip(plain, checked, strict=True):
        assert torch.allclose(a, b, atol=1e-6)


def test_save_and_load_round_trip(tmp_path):
    unet = tiny()
    unet.save_pretrained(tmp_path / "unet")
    loaded = VideoUNet.from_pretrained(tmp_path / "unet")
    assert loaded.config == unet.config
    x, t, context = inputs(unet.config)
    with torch.no_grad():
        assert torch.equal(loaded.eval()(x, t, context), unet(x, t, context))


def test_bad_inputs_raise_clear_errors():
    unet = tiny()
    x, t, context = inputs(unet.config)
    with pytest.raises(ValueError, match="x must be"):
        unet(x[:, :3], t, context)
    with pytest.raises(ValueError, match="multiples of 2"):
        unet(x[..., :7, :7], t, context)
    with pytest.raises(ValueError, match="context must be"):
        unet(x, t, context[..., :10])
    with pytest.raises(ValueError, match="timesteps must be"):
        unet(x, torch.tensor([1, 2, 3]), context)
