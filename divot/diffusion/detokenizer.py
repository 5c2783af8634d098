"""The Divot de-tokenizer: tokens (b, q, d) -> video frames (b, 16, 3, H, W) by conditional video diffusion.

    tokens --condition resampler--> context (b, 125, context_dim)
    noise (b, c, t, h, w) --U-Net (v-prediction), CFG against the unconditional context--> x_0
    x_0 --VAE decode per frame (paper) / identity (pixel-space tiny preset)--> frames in [-1, 1]

The unconditional context is the tokenizer's output for an all-zero (mid-grey) clip through the condition
resampler. The tokens of that clip are stored in the checkpoint (``uncond_tokens``, set from a tokenizer by
``set_unconditional_tokens``); the context is computed once and cached while the model is in eval mode.
"""

from __future__ import annotations

import copy
import logging
from contextlib import nullcontext
from dataclasses import dataclass, field

import torch
from einops import rearrange
from torch import nn

from divot.constants import DENSE_FRAMES, FRAME_SIZE
from divot.diffusion.condition import ConditionResampler
from divot.diffusion.config import (
    SAMPLERS,
    ConditionResamplerConfig,
    ScheduleConfig,
    UNetConfig,
    VAEConfig,
    condition_preset,
    unet_preset,
    vae_preset,
)
from divot.diffusion.offload import install_cpu_offload, offload_all, remove_cpu_offload
from divot.diffusion.reference_sampler import reference_ddim_sample
from divot.diffusion.sampling import sample_with_scheduler
from divot.diffusion.schedule import make_alphas_cumprod, make_scheduler
from divot.diffusion.unet import VideoUNet
from divot.diffusion.vae import build_vae, decode_latents, encode_frames
from divot.hub import PretrainedMixin

logger = logging.getLogger(__name__)


@dataclass
class DetokenizerConfig:
    unet: UNetConfig = field(default_factory=UNetConfig)
    condition: ConditionResamplerConfig = field(default_factory=ConditionResamplerConfig)
    vae: VAEConfig | None = field(default_factory=VAEConfig)  # None: the U-Net denoises pixels directly
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    num_tokens: int = 64  # tokens per clip coming from the tokenizer (its num_queries)
    num_frames: int = DENSE_FRAMES
    frame_size: int = FRAME_SIZE
    fs: int = 3  # frame-stride condition of the U-Net
    # Pixel space only (vae None): fold patch_size x patch_size pixels into channels (a lossless space-to-depth
    # "autoencoder"), so a tiny U-Net works on (3 p p, t, H/p, W/p) and trains several times faster on a CPU.
    patch_size: int = 1

    def __post_init__(self):
        if self.patch_size < 1 or (self.vae is not None and self.patch_size != 1):
            raise ValueError(f"patch_size must be >= 1, and 1 with a VAE; got {self.patch_size}")
        if self.unet.in_channels != self.latent_channels or self.unet.out_channels != self.latent_channels:
            raise ValueError(f"U-Net in/out channels ({self.unet.in_channels}/{self.unet.out_channels}) must equal "
                             f"the {'VAE latent' if self.vae else 'pixel'} channels {self.latent_channels}")
        if self.unet.context_dim != self.condition.output_dim:
            raise ValueError(f"U-Net context_dim {self.unet.context_dim} != condition resampler output_dim "
                             f"{self.condition.output_dim}")
        if self.frame_size % self.pixels_per_latent or self.latent_size % self.unet.downsample_factor:
            raise ValueError(f"frame_size {self.frame_size} must be divisible by {self.pixels_per_latent} x "
                             f"{self.unet.downsample_factor} (VAE and U-Net downsampling)")

    @property
    def token_dim(self) -> int:
        return self.condition.input_dim

    @property
    def latent_channels(self) -> int:
        return self.vae.z_channels if self.vae is not None else 3 * self.patch_size**2

    @property
    def pixels_per_latent(self) -> int:
        return self.vae.downsample_factor if self.vae is not None else self.patch_size

    @property
    def latent_size(self) -> int:
        return self.frame_size // self.pixels_per_latent


def _tiny_config() -> DetokenizerConfig:
    # Pixel space folded 2 x 2 into 12 channels, 8 frames (every other frame of a 16-frame clip): the U-Net sees
    # (12, 8, 16, 16). Spatial attention on the 8 x 8 level only, no extra temporal block after the stem, no
    # dropout, learned position tables, a context grid. About 4x cheaper to train on a CPU than (3, 16, 32, 32)
    # with the full switch set.
    unet = unet_preset("tiny")
    unet.in_channels = unet.out_channels = 12
    unet.attention_resolutions = (2,)
    unet.temporal_conv_dropout = 0.0
    unet.init_attention = False
    unet.num_frames = 8
    unet.position_grid = (8, 16, 16)  # where and when to draw: the tiny U-Net has no other position signal
    unet.pooled_context = True  # global attributes through the timestep embedding
    condition = condition_preset("tiny")
    unet.context_grid = (condition.num_queries, 4, 8)  # every context token -> per-frame 4 x 4 maps: colour x2
    schedule = ScheduleConfig(prediction_type="sample")  # x_0 prediction: clean renders in CPU minutes
    return DetokenizerConfig(unet=unet, condition=condition, vae=None, schedule=schedule, num_tokens=16, num_frames=8,
                             frame_size=32, patch_size=2)


DETOKENIZER_PRESETS = {
    "paper": lambda: DetokenizerConfig(unet=unet_preset("paper"), condition=condition_preset("paper"),
                                       vae=vae_preset("paper")),
    "tiny": _tiny_config,  # pixel space (2 x 2 folded), 8 frames x 32 x 32, tokens of the tiny tokenizer (16 x 32)
}


def detokenizer_preset(name: str) -> DetokenizerConfig:
    if name not in DETOKENIZER_PRESETS:
        raise ValueError(f"unknown de-tokenizer preset {name!r}; choose from {sorted(DETOKENIZER_PRESETS)}")
    return copy.deepcopy(DETOKENIZER_PRESETS[name]())


class Detokenizer(PretrainedMixin, nn.Module):
    """Tokens (b, num_tokens, token_dim) -> frames (b, num_frames, 3, frame_size, frame_size) in [-1, 1].

    Example::

        detok = Detokenizer.from_preset("tiny")
        frames = detok.decode(tokens, num_steps=20, sampler="dpmsolver++", generator=torch.Generator().manual_seed(0))
    """

    config_class = DetokenizerConfig
    model_type = "divot_detokenizer"

    def __init__(self, config: DetokenizerConfig):
        super().__init__()
        self.config = config
        self.unet = VideoUNet(config.unet)
        self.condition = ConditionResampler(config.condition)
        self.vae = build_vae(config.vae).requires_grad_(False).eval() if config.vae is not None else None
        self.register_buffer("uncond_tokens", torch.zeros(1, config.num_tokens, config.token_dim))
        self._uncond_cache: torch.Tensor | None = None
        self._offload_hooks: list = []  # accelerate hooks while CPU offload is on (enable_cpu_offload)

    @classmethod
    def from_preset(cls, name: str) -> Detokenizer:
        """A randomly initialised de-tokenizer from a named preset (``paper`` or ``tiny``)."""
        return cls(detokenizer_preset(name))

    @staticmethod
    def presets() -> list[str]:
        return list(DETOKENIZER_PRESETS)

    def enable_cpu_offload(self, device: str | torch.device) -> None:
        """Keep the condition resampler, U-Net and VAE on the CPU; each moves to ``device`` only while it runs
        and the previous one goes back first (``divot.diffusion.offload``), so ``device`` holds about the U-Net
        alone, not all three. The unconditional tokens (a small buffer) move to ``device``: inputs, noise and
        generators belong there. ``decode`` sends every part back to the CPU when it ends."""
        self.disable_cpu_offload()
        self.uncond_tokens = self.uncond_tokens.to(device)
        self._uncond_cache = None
        parts = [m for m in (self.condition, self.unet, self.vae) if m is not None]  # the order they run in
        self._offload_hooks = install_cpu_offload(parts, device)
        logger.info("de-tokenizer CPU offload on: %d parts, executing on %s", len(parts), device)

    def disable_cpu_offload(self) -> None:
        """Remove the offload hooks; every part stays on the CPU (move the model with ``to``)."""
        offload_all(self._offload_hooks)
        remove_cpu_offload(self._offload_hooks)
        self._offload_hooks = []

    @property
    def cpu_offload(self) -> bool:
        return bool(self._offload_hooks)

    def train(self, mode: bool = True):
        if mode:
            self._uncond_cache = None  # weights may change: recompute when back in eval mode
        super().train(mode)
        if self.vae is not None:
            self.vae.eval()  # frozen
        return self

    @torch.no_grad()
    def set_unconditional_tokens(self, tokenizer: nn.Module) -> None:
        """Store the tokenizer's tokens for an all-zero (mid-grey) clip: the unconditional input."""
        cfg = tokenizer.config
        was_training = tokenizer.training
        tokenizer.eval()
        param = next(tokenizer.parameters())
        grey = torch.zeros(1, cfg.num_frames, 3, cfg.frame_size, cfg.frame_size, device=param.device)
        tokens = tokenizer(grey).float()
        tokenizer.train(was_training)
        if tokens.shape[1:] != self.uncond_tokens.shape[1:]:
            raise ValueError(f"tokenizer gives tokens {tuple(tokens.shape[1:])}, the de-tokenizer expects "
                             f"{tuple(self.uncond_tokens.shape[1:])}")
        self.uncond_tokens.copy_(tokens.to(self.uncond_tokens.device))
        self._uncond_cache = None

    def unconditional_context(self) -> torch.Tensor:
        """(1, q, context_dim): condition resampler on the unconditional tokens; cached in eval mode."""
        if self.training:
            return self.condition(self.uncond_tokens)
        cache = self._uncond_cache
        if cache is None or cache.device != self.uncond_tokens.device:
            with torch.no_grad():
                cache = self._uncond_cache = self.condition(self.uncond_tokens)
        return cache

    def load_saved_state_dict(self, state_dict: dict[str, torch.Tensor], where: str, assign: bool = False) -> None:
        super().load_saved_state_dict(state_dict, where, assign)
        self._uncond_cache = None

    def context(self, tokens: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        if tokens.ndim != 3 or tokens.shape[1:] != (cfg.num_tokens, cfg.token_dim):
            raise ValueError(f"tokens must be (b, {cfg.num_tokens}, {cfg.token_dim}), got {tuple(tokens.shape)}")
        return self.condition(tokens)

    def predict(self, x: torch.Tensor, t: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """The U-Net's raw output for latents x (b, c, t, h, w) at timesteps t (b,): v, epsilon or x_0 as
        ``config.schedule.prediction_type`` says (what the training objective compares with its target)."""
        return self.unet(x, t, context, fs=self.config.fs)

    def denoise(self, x: torch.Tensor, t: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """What the samplers step with: v (epsilon for an epsilon U-Net) for latents x at timesteps t (b,).

        An x_0 ("sample") U-Net is converted: v = (sqrt(abar) x_t - x_0) / sqrt(1 - abar).
        """
        out = self.predict(x, t, context)
        if self.config.schedule.prediction_type != "sample":
            return out
        abar = self._alphas_cumprod(x.device)[torch.as_tensor(t, device=x.device).long()]
        abar = abar.reshape(-1, *([1] * (x.ndim - 1))).float()  # (b, 1, 1, 1, 1)
        return ((abar.sqrt() * x.float() - out.float()) / (1.0 - abar).sqrt()).to(out.dtype)

    def _alphas_cumprod(self, device: torch.device) -> torch.Tensor:
        table = getattr(self, "_abar", None)
        if table is None or table.device != device:
            table = self._abar = make_alphas_cumprod(self.config.schedule).float().to(device)
        return table

    def frames_to_latents(self, frames: torch.Tensor) -> torch.Tensor:
        """Frames (b, t, 3, H, W) in [-1, 1] -> diffusion space x_0 (b, c, t, h, w)."""
        if self.vae is not None:
            return encode_frames(self.vae, rearrange(frames, "b t c h w -> b c t h w"))
        p = self.config.patch_size
        return rearrange(frames, "b t c (h p1) (w p2) -> b (c p1 p2) t h w", p1=p, p2=p)

    def latents_to_frames(self, latents: torch.Tensor) -> torch.Tensor:
        """Diffusion space (b, c, t, h, w) -> frames (b, t, 3, H, W) clamped to [-1, 1]."""
        if self.vae is not None:
            return rearrange(decode_latents(self.vae, latents), "b c t h w -> b t c h w").clamp(-1.0, 1.0)
        p = self.config.patch_size
        return rearrange(latents, "b (c p1 p2) t h w -> b t c (h p1) (w p2)", p1=p, p2=p).clamp(-1.0, 1.0)

    @torch.no_grad()
    def decode(self, tokens: torch.Tensor, num_steps: int = 50, guidance_scale: float = 7.5,
               guidance_rescale: float = 0.7, sampler: str = "reference", eta: float = 1.0,
               generator: torch.Generator | None = None, x_T: torch.Tensor | None = None,
               progress: bool = True) -> torch.Tensor:
        """Render tokens (b, num_tokens, token_dim) as frames (b, num_frames, 3, H, W) in [-1, 1].

        ``sampler``: "reference" (the published DDIM: uniform steps 1, 21, ..., 981 for 50 steps, eta 1.0,
        float16-rounded tables) or a diffusers scheduler: "ddim", "dpmsolver++", "euler", "unipc", "ddpm".
        ``guidance_scale`` 1.0 disables classifier-free guidance. ``x_T`` fixes the initial noise.
        """
        if sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {sampler!r}; choose from {list(SAMPLERS)}")
        was_training = self.training
        self.eval()
        try:
            return self._decode(tokens, num_steps, guidance_scale, guidance_rescale, sampler, eta, generator, x_T,
                                progress)
        finally:
            offload_all(self._offload_hooks)  # with CPU offload every part waits on the CPU again
            self.train(was_training)

    def autocast(self):
        """bf16 / fp16 autocast for a de-tokenizer loaded in that dtype (``from_pretrained(dtype=...)``), around
        each network call only: the sampler's latents, tables and guidance arithmetic stay float32."""
        dtype = next((p.dtype for p in self.unet.parameters() if p.dtype in (torch.bfloat16, torch.float16)), None)
        if dtype is None:
            return nullcontext()
        return torch.autocast(device_type=self.uncond_tokens.device.type, dtype=dtype)

    def load_dtype_rule(self, dtype, device=None):
        """Every floating weight in ``dtype`` but the stored unconditional tokens (data, kept as saved)."""
        rule = super().load_dtype_rule(dtype, device)
        return lambda key, stored: stored if key == "uncond_tokens" else rule(key, stored)

    def _decode(self, tokens, num_steps, guidance_scale, guidance_rescale, sampler, eta, generator, x_T, progress):
        cfg = self.config
        with self.autocast():
            cond = self.context(tokens.to(self.uncond_tokens.device, torch.float32))
            uncond = self.unconditional_context() if guidance_scale != 1.0 else None
        b = cond.shape[0]
        uncond = uncond.expand(b, -1, -1) if uncond is not None else None
        denoise = self.denoise

        def low_precision_denoise(x, t, context):
            with self.autocast():
                return self.denoise(x, t, context).float()

        if not isinstance(self.autocast(), nullcontext):
            denoise = low_precision_denoise
        shape = (b, cfg.latent_channels, cfg.num_frames, cfg.latent_size, cfg.latent_size)
        if x_T is None:
            x_T = torch.randn(shape, generator=generator, device=cond.device)
        elif tuple(x_T.shape) != shape:
            raise ValueError(f"x_T must have shape {shape}, got {tuple(x_T.shape)}")
        if sampler == "reference":
            x0 = reference_ddim_sample(denoise, cond, uncond, x_T=x_T, num_steps=num_steps, eta=eta,
                                       guidance=guidance_scale, guidance_rescale=guidance_rescale,
                                       generator=generator, schedule=cfg.schedule, progress=progress)
        else:
            x0 = sample_with_scheduler(denoise, make_scheduler(sampler, cfg.schedule), x_T, cond, uncond,
                                       guidance=guidance_scale, rescale=guidance_rescale, num_steps=num_steps,
                                       generator=generator, progress=progress, eta=eta)
        with self.autocast():
            return self.latents_to_frames(x0)
