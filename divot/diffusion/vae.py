"""The Stable Diffusion VAE as ``diffusers.AutoencoderKL``: building, strict LDM-weight loading, per-frame video I/O.

Videos are (b, c, t, h, w); the VAE is 2D, so frames are folded into the batch and processed in slices of at
most ``chunk_size`` frames to bound memory. Latents carry the ``scale_factor`` (0.18215) the U-Net was trained on.
"""

from __future__ import annotations

import logging

import torch
from diffusers import AutoencoderKL
from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint
from einops import rearrange

from divot.diffusion.config import VAEConfig
from divot.hub import check_keys, load_state_dict_strict

logger = logging.getLogger(__name__)

LDM_VAE_PREFIX = "first_stage_model."


def diffusers_vae_kwargs(config: VAEConfig) -> dict:
    """``AutoencoderKL`` constructor arguments for an LDM ``ddconfig``-style config."""
    n = len(config.ch_mult)
    return dict(in_channels=config.in_channels, out_channels=config.out_channels,
                down_block_types=("DownEncoderBlock2D",) * n, up_block_types=("UpDecoderBlock2D",) * n,
                block_out_channels=config.block_out_channels, layers_per_block=config.num_res_blocks,
                latent_channels=config.z_channels, norm_num_groups=32, sample_size=config.resolution,
                scaling_factor=config.scale_factor)


def build_vae(config: VAEConfig) -> AutoencoderKL:
    """A randomly initialised ``AutoencoderKL`` with the layout of ``config``."""
    return AutoencoderKL(**diffusers_vae_kwargs(config))


def convert_reference_vae_state(state: dict[str, torch.Tensor], config: VAEConfig,
                                where: str = "VAE checkpoint") -> dict[str, torch.Tensor]:
    """LDM keys (``first_stage_model.*`` or bare ``encoder.*`` / ``decoder.*`` / ``quant_conv.*``) -> diffusers keys.

    diffusers' converter drops keys it does not know without a word; here every source tensor must be used.
    """
    prefix = ""
    if any(k.startswith(LDM_VAE_PREFIX) for k in state):
        stray = [k for k in state if not k.startswith(LDM_VAE_PREFIX)]
        check_keys([], stray, where)
        prefix = LDM_VAE_PREFIX
        state = {k[len(prefix):]: v for k, v in state.items()}
    converted = convert_ldm_vae_checkpoint(dict(state), diffusers_vae_kwargs(config))
    if len(converted) != len(state):
        # Each LDM tensor maps to exactly one diffusers tensor (attention convs become views of it).
        used = {v.untyped_storage().data_ptr() for v in converted.values()}
        unused = [prefix + k for k, v in state.items() if v.untyped_storage().data_ptr() not in used]
        raise ValueError(f"{where}: {len(state) - len(converted)} VAE tensor(s) were not converted "
                         f"(unknown LDM names?): {', '.join(sorted(unused)[:20]) or 'unidentified'}")
    return converted


def load_reference_vae(state: dict[str, torch.Tensor], config: VAEConfig,
                       where: str = "VAE checkpoint") -> AutoencoderKL:
    """An ``AutoencoderKL`` holding LDM-format weights, loaded strictly (nothing missing or unexpected)."""
    vae = build_vae(config)
    load_state_dict_strict(vae, convert_reference_vae_state(state, config, where), where)
    return vae.eval()


def _check_video(x: torch.Tensor, channels: int, name: str) -> None:
    if x.ndim != 5 or x.shape[1] != channels:
        raise ValueError(f"{name} must be (b, {channels}, t, h, w), got {tuple(x.shape)}")


def _per_frame(fn, x: torch.Tensor, chunk_size: int) -> torch.Tensor:
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    b = x.shape[0]
    frames = rearrange(x, "b c t h w -> (b t) c h w")
    out = torch.cat([fn(frames[i:i + chunk_size]) for i in range(0, frames.shape[0], chunk_size)])
    return rearrange(out, "(b t) c h w -> b c t h w", b=b)


def encode_frames(vae: AutoencoderKL, video: torch.Tensor, chunk_size: int = 16, sample: bool = False,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """(b, 3, t, H, W) pixels in [-1, 1] -> (b, 4, t, H/8, W/8) scaled latents (posterior mean unless ``sample``)."""
    _check_video(video, vae.config.in_channels, "video")
    scale = vae.config.scaling_factor

    def encode(frames: torch.Tensor) -> torch.Tensor:
        posterior = vae.encode(frames.to(vae.dtype)).latent_dist
        z = posterior.sample(generator) if sample else posterior.mean
        return z * scale

    return _per_frame(encode, video, chunk_size)


def decode_latents(vae: AutoencoderKL, latents: torch.Tensor, chunk_size: int = 16) -> torch.Tensor:
    """(b, 4, t, h, w) scaled latents -> (b, 3, t, 8h, 8w) pixels (roughly [-1, 1]; not clamped)."""
    _check_video(latents, vae.config.latent_channels, "latents")
    scale = vae.config.scaling_factor
    return _per_frame(lambda z: vae.decode(z.to(vae.dtype) / scale).sample, latents, chunk_size)
