"""The high-level Detokenizer: decode API, unconditional context, save/load, converter CLI (golden)."""

import json

import pytest
import torch
from safetensors.torch import load_file

from divot.chat.generation_defaults import PUBLISHED, GenerationDefaults
from divot.cli import main
from divot.diffusion import Detokenizer, DetokenizerConfig, detokenizer_preset
from divot.diffusion.vae import decode_latents
from divot.tokenizer import VideoTokenizer
from tests.diffusion.conftest import REFERENCE_GUIDANCE, REFERENCE_GUIDANCE_RESCALE


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return Detokenizer.from_preset("tiny").eval()


@pytest.mark.parametrize("sampler", ["reference", "ddim", "dpmsolver++", "euler", "unipc"])
def test_decode_shapes_and_range(tiny, sampler):
    cfg = tiny.config
    tokens = torch.randn(2, cfg.num_tokens, cfg.token_dim)
    frames = tiny.decode(tokens, num_steps=2, sampler=sampler, generator=torch.Generator().manual_seed(0),
                         progress=False)
    assert frames.shape == (2, cfg.num_frames, 3, cfg.frame_size, cfg.frame_size)
    assert frames.min() >= -1 and frames.max() <= 1


def test_decode_is_reproducible_with_a_seed(tiny):
    tokens = torch.randn(1, tiny.config.num_tokens, tiny.config.token_dim)
    a = tiny.decode(tokens, num_steps=2, sampler="dpmsolver++", generator=torch.Generator().manual_seed(3),
                    progress=False)
    b = tiny.decode(tokens, num_steps=2, sampler="dpmsolver++", generator=torch.Generator().manual_seed(3),
                    progress=False)
    assert torch.equal(a, b)


def test_bad_inputs_are_named(tiny):
    with pytest.raises(ValueError, match="tokens must be"):
        tiny.decode(torch.randn(1, 3, 3), num_steps=1, progress=False)
    with pytest.raises(ValueError, match="unknown sampler"):
        tiny.decode(torch.randn(1, 16, 32), sampler="magic", progress=False)
    with pytest.raises(ValueError, match="unknown de-tokenizer preset"):
        detokenizer_preset("huge")


def test_unconditional_tokens_from_tokenizer_and_cache(tiny, tmp_path):
    torch.manual_seed(1)
    tokenizer = VideoTokenizer.from_preset("tiny").eval()
    detok = Detokenizer.from_preset("tiny").eval()
    detok.set_unconditional_tokens(tokenizer)
    grey = torch.zeros(1, 5, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(detok.uncond_tokens, tokenizer(grey))
    first = detok.unconditional_context()
    assert detok.unconditional_context() is first  # computed once
    detok.save_pretrained(tmp_path / "d")
    loaded = Detokenizer.from_pretrained(tmp_path / "d").eval()
    assert torch.equal(loaded.uncond_tokens, detok.uncond_tokens)
    assert torch.allclose(loaded.unconditional_context(), first)


def test_config_mismatches_are_explained():
    cfg = detokenizer_preset("tiny")
    cfg.unet.context_dim = 32
    with pytest.raises(ValueError, match="context_dim"):
        DetokenizerConfig(unet=cfg.unet, condition=cfg.condition, vae=None, num_tokens=16, frame_size=32,
                          patch_size=2)
    cfg = detokenizer_preset("tiny")
    with pytest.raises(ValueError, match="pixel channels 3"):
        DetokenizerConfig(unet=cfg.unet, condition=cfg.condition, vae=None, num_tokens=16, frame_size=32)


def test_pixel_patches_round_trip(tiny):
    frames = torch.rand(2, 16, 3, 32, 32) * 2 - 1
    latents = tiny.frames_to_latents(frames)
    assert latents.shape == (2, 12, 16, 16, 16)
    assert torch.equal(tiny.latents_to_frames(latents), frames)


@pytest.mark.golden
def test_convert_cli_and_reference_decode_match_golden(golden_dir, golden_schedule, deterministic_case,
                                                       tmp_path):
    det_cfg = json.loads((golden_dir / "detokenizer_config.json").read_text())
    vae_cfg = json.loads((golden_dir / "vae_config.json").read_text())
    tok_dir = tmp_path / "tok"
    tok_json = tmp_path / "tok.json"
    tok_json.write_text((golden_dir / "tokenizer_config.json").read_text())
    assert main(["convert", "tokenizer", "--tokenizer-ckpt", str(golden_dir / "tokenizer_official.safetensors"),
                 "--clip-ckpt", str(golden_dir / "open_clip_visual.safetensors"), "--config", str(tok_json),
                 "--out", str(tok_dir)]) == 0
    ckpt = {**load_file(str(golden_dir / "detokenizer_official.safetensors")),
            **load_file(str(golden_dir / "vae_official.safetensors"))}
    torch.save(ckpt, tmp_path / "Divot_detokenizer_stage2.bin")
    io = load_file(str(golden_dir / "detokenizer_io.safetensors"))
    sampler_io = load_file(str(golden_dir / "sampler_io.safetensors"))
    latent = io["x_t"].shape[-1]
    down = 2 ** (len(vae_cfg["ddconfig"]["ch_mult"]) - 1)
    (tmp_path / "ref.json").write_text(json.dumps({
        "unet": det_cfg["unet"], "image_proj_model": det_cfg["image_proj_model"], "ddconfig": vae_cfg["ddconfig"],
        "scale_factor": vae_cfg["scale_factor"], "frame_size": latent * down}))
    out = tmp_path / "model" / "detokenizer"  # the detokenizer/ of a model directory
    assert main(["convert", "detokenizer", "--ckpt", str(tmp_path / "Divot_detokenizer_stage2.bin"),
                 "--tokenizer", str(tok_dir), "--config", str(tmp_path / "ref.json"), "--out", str(out)]) == 0
    # the published generation settings go to the model directory's root, where Divot.from_pretrained reads them
    assert GenerationDefaults.load(tmp_path / "model" / "generation.json") == PUBLISHED
    assert (PUBLISHED.guidance_scale, PUBLISHED.guidance_rescale) == (REFERENCE_GUIDANCE, REFERENCE_GUIDANCE_RESCALE)
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]
    detok = Detokenizer.from_pretrained(out).eval()
    # The golden run's settings that a converted checkpoint does not carry (the converter keeps the paper's
    # 16 frames, fs 3 and schedule): from the golden tensors and the JSON's schedule block.
    detok.config.num_frames = io["x_t"].shape[2]
    detok.config.fs = int(io["fs"].item())
    detok.config.schedule = golden_schedule
    with torch.no_grad():
        context = detok.context(io["features"])
        assert (context - io["context"]).abs().max() <= 1e-4
        v = detok.denoise(io["x_t"], io["timestep"], context)
        assert (v - io["model_output"]).abs().max() <= 1e-4
    # Reference DDIM (the shortest eta-0 run) with the golden initial noise and unconditional context.
    case = deterministic_case
    detok._uncond_cache = sampler_io["uncond_context"]
    frames = detok.decode(io["features"], num_steps=case.num_steps, eta=case.eta, sampler="reference",
                          guidance_scale=REFERENCE_GUIDANCE, guidance_rescale=REFERENCE_GUIDANCE_RESCALE,
                          x_T=case.x_T, progress=False)
    expected = decode_latents(detok.vae, case.final_latent).clamp(-1, 1)
    assert (frames - expected.permute(0, 2, 1, 3, 4)).abs().max() <= 1e-4


def test_x0_unet_is_stepped_on_v(tiny):
    """The tiny preset predicts x_0; samplers get v = (sqrt(abar) x_t - x_0) / sqrt(1 - abar) from denoise."""
    from divot.diffusion.schedule import make_alphas_cumprod

    cfg = tiny.config
    assert cfg.schedule.prediction_type == "sample"
    x = torch.randn(2, cfg.latent_channels, cfg.num_frames, cfg.latent_size, cfg.latent_size)
    t = torch.tensor([10, 900])
    context = tiny.context(torch.randn(2, cfg.num_tokens, cfg.token_dim))
    x0 = tiny.predict(x, t, context)
    v = tiny.denoise(x, t, context)
    abar = make_alphas_cumprod(cfg.schedule).float()[t].reshape(2, 1, 1, 1, 1)
    torch.testing.assert_close(abar.sqrt() * x - (1 - abar).sqrt() * v, x0, atol=1e-5, rtol=1e-4)


def test_position_tables_and_pooled_context():
    """Tiny-preset aids: position tables cover at most their frames and exactly their latent size; the pooled
    context reaches every ResBlock through the timestep embedding (gradients flow into it)."""
    from divot.diffusion.unet import VideoUNet

    cfg = detokenizer_preset("tiny").unet
    unet = VideoUNet(cfg)
    with torch.no_grad():  # the residual branches start at zero (zero-initialised output convs): wake them
        for p in unet.parameters():
            if not p.any():
                p.normal_(std=0.02)
    context = torch.randn(1, 125, cfg.context_dim, requires_grad=True)
    out = unet(torch.randn(1, cfg.in_channels, 4, 16, 16), torch.tensor([500]), context)  # 4 <= 8 frames
    assert out.shape == (1, cfg.in_channels, 4, 16, 16)
    out.square().mean().backward()
    assert unet.context_embedding[0].weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="position tables cover 8 frames of 16x16"):
        unet(torch.randn(1, cfg.in_channels, 8, 8, 8), torch.tensor([1]), context.detach())
    with pytest.raises(ValueError, match="position_grid"):
        type(cfg)(position_grid=(8, 16))
    assert not hasattr(VideoUNet(type(cfg)(model_channels=32, channel_mult=(1,), head_dim=16, context_dim=64)),
                       "pos_spatial")


def test_context_grid_maps_every_context_token_to_where_and_when():
    from divot.diffusion.unet import VideoUNet
    from divot.diffusion.unet_blocks import ContextGrid

    grid = ContextGrid(num_tokens=5, context_dim=8, num_frames=4, grid=2, channels=3, out_channels=6)
    context = torch.randn(2, 5, 8, requires_grad=True)
    assert not grid(context, 3, 4, 4).any()  # zero-initialised output: a fresh U-Net is unchanged
    torch.nn.init.normal_(grid.proj.weight)
    out = grid(context, 3, 4, 4)  # ((b t), out_channels, h, w)
    assert out.shape == (6, 6, 4, 4)
    assert torch.equal(out[..., :2, :2], out[..., :1, :1].expand(-1, -1, 2, 2))  # nearest upsampling of 2 x 2
    out[0].sum().backward()  # frame 0 of clip 0 depends on clip 0's tokens only
    assert context.grad[0].abs().sum() > 0 and not context.grad[1].any()
    with pytest.raises(ValueError, match="takes 5 context tokens and at most 4 frames"):
        grid(torch.randn(1, 6, 8), 3, 4, 4)
    cfg = detokenizer_preset("tiny").unet
    cfg.context_grid = (125, 4, 8)
    unet = VideoUNet(cfg)
    assert unet.context_grid.to_grid.out_features == cfg.num_frames * 8 * 4 * 4
    out = unet(torch.randn(1, cfg.in_channels, 8, 16, 16), torch.tensor([500]), torch.randn(1, 125, cfg.context_dim))
    assert out.shape == (1, cfg.in_channels, 8, 16, 16)
    with pytest.raises(ValueError, match="context_grid"):
        type(cfg)(context_grid=(125, 4))
