import json

import pytest
import torch
from safetensors.torch import load_file

from divot.diffusion.config import vae_config_from_reference, vae_preset
from divot.diffusion.vae import build_vae, decode_latents, encode_frames, load_reference_vae


@pytest.fixture(scope="module")
def golden_vae(golden_dir):
    meta = json.loads((golden_dir / "vae_config.json").read_text())
    config = vae_config_from_reference(meta["ddconfig"], meta["scale_factor"])
    state = load_file(str(golden_dir / "vae_official.safetensors"))
    return load_reference_vae(state, config), load_file(str(golden_dir / "vae_io.safetensors")), state, config


@pytest.mark.golden
def test_vae_decode_and_posterior_match_reference(golden_vae):
    vae, io, _, config = golden_vae
    # The golden tensors have the sizes vae_config.json gives (latent and pixel channels, 2^(levels-1) down).
    b, _, h, w = io["latents"].shape
    down = config.downsample_factor
    assert io["latents"].shape[1] == config.z_channels
    assert io["images"].shape[1:] == (config.in_channels, h * down, w * down)
    assert io["decoded"].shape == (b, config.out_channels, h * down, w * down)
    with torch.no_grad():
        decoded = vae.decode(io["latents"]).sample
        posterior = vae.encode(io["images"]).latent_dist
    assert posterior.mean.shape == io["posterior_mean"].shape
    assert (decoded - io["decoded"]).abs().max() <= 1e-5
    assert (posterior.mean - io["posterior_mean"]).abs().max() <= 1e-5
    assert (posterior.logvar - io["posterior_logvar"]).abs().max() <= 1e-5


@pytest.mark.golden
def test_vae_loading_is_strict(golden_vae):
    _, _, state, config = golden_vae
    with pytest.raises(ValueError, match="not converted.*first_stage_model.decoder.extra.weight"):
        load_reference_vae({**state, "first_stage_model.decoder.extra.weight": torch.zeros(2)}, config)
    without = {k: v for k, v in state.items() if k != "first_stage_model.decoder.conv_out.bias"}
    with pytest.raises(ValueError, match="missing key.*decoder.conv_out.bias"):
        load_reference_vae(without, config)
    with pytest.raises(ValueError, match="unexpected key.*model.diffusion"):
        load_reference_vae({**state, "model.diffusion": torch.zeros(1)}, config)


@pytest.mark.golden
def test_video_helpers_work_per_frame_in_chunks(golden_vae):
    vae, io, _, config = golden_vae
    b, t = 2, 5
    g = torch.Generator().manual_seed(0)
    c, side = config.in_channels, io["images"].shape[-1]
    video = torch.rand(b, c, t, side, side, generator=g) * 2 - 1
    with torch.no_grad():
        latents = encode_frames(vae, video, chunk_size=3)
        frames = video.permute(0, 2, 1, 3, 4).reshape(b * t, c, side, side)
        direct = vae.encode(frames).latent_dist.mean * config.scale_factor
        latent_side = side // config.downsample_factor
        assert latents.shape == (b, config.z_channels, t, latent_side, latent_side)
        assert torch.allclose(latents.permute(0, 2, 1, 3, 4).reshape(direct.shape), direct, atol=1e-5)
        decoded = decode_latents(vae, latents, chunk_size=4)
        direct_decoded = vae.decode(direct / config.scale_factor).sample
        assert decoded.shape == (b, config.out_channels, t, side, side)
        assert torch.allclose(decoded.permute(0, 2, 1, 3, 4).reshape(direct_decoded.shape), direct_decoded,
                              atol=1e-5)
        sampled = encode_frames(vae, video, sample=True, generator=torch.Generator().manual_seed(0))
        assert sampled.shape == latents.shape and not torch.equal(sampled, latents)


def test_video_helpers_validate_shapes():
    vae = build_vae(vae_preset("tiny"))
    with pytest.raises(ValueError, match=r"video must be \(b, 3, t, h, w\)"):
        encode_frames(vae, torch.zeros(1, 3, 16, 16))
    with pytest.raises(ValueError, match=r"latents must be \(b, 4, t, h, w\)"):
        decode_latents(vae, torch.zeros(1, 3, 2, 4, 4))
    with pytest.raises(ValueError, match="chunk_size"):
        decode_latents(vae, torch.zeros(1, 4, 2, 4, 4), chunk_size=0)
