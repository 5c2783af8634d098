"""``Detokenizer.enable_cpu_offload``: the condition resampler, U-Net and VAE are hooked in the order they run,
each runs through its hook, the frames are identical to a plain decode, and everything waits on the CPU after.

On a CPU-only machine the execution device is the CPU too, so no bytes move; accelerate's hooks do the moving
on an accelerator (``cpu_offload_with_hook``)."""

import torch

from divot.diffusion.config import condition_preset, unet_preset, vae_preset
from divot.diffusion.detokenizer import Detokenizer, DetokenizerConfig


def tiny_latent_config() -> DetokenizerConfig:
    """The tiny U-Net and resampler with the tiny VAE (2x down, 4 latent channels): all three parts."""
    return DetokenizerConfig(unet=unet_preset("tiny"), condition=condition_preset("tiny"), vae=vae_preset("tiny"),
                             num_tokens=16, num_frames=4, frame_size=32)


def build(kind: str) -> Detokenizer:
    torch.manual_seed(0)
    model = Detokenizer(tiny_latent_config()) if kind == "latent" else Detokenizer.from_preset("tiny")
    model.uncond_tokens.normal_()
    return model.eval()


def _decode(detok: Detokenizer) -> torch.Tensor:
    cfg = detok.config
    tokens = torch.randn(2, cfg.num_tokens, cfg.token_dim, generator=torch.Generator().manual_seed(1))
    shape = (2, cfg.latent_channels, cfg.num_frames, cfg.latent_size, cfg.latent_size)
    x_T = torch.randn(shape, generator=torch.Generator().manual_seed(2))
    return detok.decode(tokens, num_steps=2, guidance_scale=3.0, sampler="ddim", eta=0.0, x_T=x_T, progress=False)


def _parts(detok: Detokenizer) -> list:
    return [m for m in (detok.condition, detok.unet, detok.vae) if m is not None]


def test_offloaded_decode_is_identical_and_runs_every_part_through_its_hook():
    detok = build("latent")
    plain = _decode(detok)
    detok.enable_cpu_offload("cpu")
    assert detok.cpu_offload
    parts = _parts(detok)
    # accelerate's hooks, chained in the order the parts run: calling one sends the previous one back.
    hooks = [part._hf_hook for part in parts]
    assert hooks[0].prev_module_hook is None
    for previous, hook in zip(parts[:-1], hooks[1:], strict=True):
        assert hook.prev_module_hook.model is previous and hook.execution_device == torch.device("cpu")
    calls = []
    for part, hook in zip(parts, hooks, strict=True):
        name = {id(detok.condition): "condition", id(detok.unet): "unet", id(detok.vae): "vae"}[id(part)]
        pre_forward = hook.pre_forward

        def spy(module, *args, _name=name, _pre=pre_forward, **kwargs):
            calls.append(_name)
            return _pre(module, *args, **kwargs)

        hook.pre_forward = spy

    offloaded = _decode(detok)
    assert torch.equal(offloaded, plain)
    # The resampler runs first (conditional, then unconditional tokens), the U-Net at every step (CFG: one
    # batched call per step or two), the VAE last.
    assert calls[:2] == ["condition", "condition"] and calls.count("unet") >= 2
    first_unet = calls.index("unet")
    first_vae = calls.index("vae")
    assert set(calls[first_unet:first_vae]) == {"unet"} and set(calls[first_vae:]) == {"vae"}
    assert all(p.device.type == "cpu" for part in parts for p in part.parameters())


def test_pixel_space_offload_and_disable():
    """The tiny preset has no VAE: two parts hooked. Enabling twice stacks no hooks; disabling removes them."""
    detok = build("pixel")
    plain = _decode(detok)
    detok.enable_cpu_offload("cpu")
    detok.enable_cpu_offload("cpu")
    parts = _parts(detok)
    assert len(parts) == 2 and all(not hasattr(part._hf_hook, "hooks") for part in parts)  # no SequentialHook
    assert parts[1]._hf_hook.prev_module_hook.model is detok.condition
    assert torch.equal(_decode(detok), plain)
    detok.disable_cpu_offload()
    assert not detok.cpu_offload and all(not hasattr(part, "_hf_hook") for part in _parts(detok))
    assert torch.equal(_decode(detok), plain)
