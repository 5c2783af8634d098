"""Noise schedule, timestep embedding, diffusers schedulers configured to match, classifier-free guidance.

The schedule is computed in float64 exactly as the reference does (``DETOKENIZER.md`` section 13): betas linear
in sqrt space, rescaled to zero terminal SNR, then ``alphas_cumprod = cumprod(1 - betas)``. The samplers are
diffusers' own; only the reference DDIM mode (bit-exact with the published sampler) lives in
``divot.diffusion.reference_sampler``.
"""

from __future__ import annotations

import math

import torch
from diffusers import (
    DDIMScheduler,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    EulerDiscreteScheduler,
    UniPCMultistepScheduler,
)

from divot.diffusion.config import ScheduleConfig


def rescale_zero_terminal_snr(betas: torch.Tensor) -> torch.Tensor:
    """Shift and scale sqrt(alphas_cumprod) so the last step has SNR 0 and the first is unchanged (float64)."""
    betas = betas.to(torch.float64)
    s = torch.cumprod(1.0 - betas, dim=0).sqrt()
    s0, s_last = s[0].clone(), s[-1].clone()
    s = (s - s_last) * (s0 / (s0 - s_last))
    alphas_bar = s**2
    alphas = torch.cat([alphas_bar[:1], alphas_bar[1:] / alphas_bar[:-1]])
    return 1.0 - alphas


def make_betas(config: ScheduleConfig | None = None) -> torch.Tensor:
    """(num_train_timesteps,) float64 betas: linspace(sqrt(start), sqrt(end))^2, optionally zero-SNR rescaled."""
    config = config or ScheduleConfig()
    betas = torch.linspace(config.beta_start**0.5, config.beta_end**0.5, config.num_train_timesteps,
                           dtype=torch.float64) ** 2
    if config.rescale_zero_terminal_snr:
        betas = rescale_zero_terminal_snr(betas)
    return betas


def make_alphas_cumprod(config: ScheduleConfig | None = None) -> torch.Tensor:
    """(num_train_timesteps,) float64 cumulative product of 1 - betas (exactly 0 at the last step if rescaled)."""
    return torch.cumprod(1.0 - make_betas(config), dim=0)


def timestep_embedding(timesteps: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding (n,) -> (n, dim) float32: [cos(t f_k), sin(t f_k)], f_k = max_period^(-k / (dim // 2)).

    Cos first, then sin (the reference order); an odd ``dim`` gets a trailing zero column.
    """
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=timesteps.device)
                      / half)
    args = timesteps.float()[:, None] * freqs[None]  # (n, half)
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


def _common(config: ScheduleConfig | None) -> dict:
    config = config or ScheduleConfig()
    return dict(num_train_timesteps=config.num_train_timesteps,
                trained_betas=make_betas(config).tolist(),
                # samplers see v from a "sample" (x_0) U-Net: Detokenizer.denoise converts it
                prediction_type="v_prediction" if config.prediction_type == "sample" else config.prediction_type)


def make_ddpm_scheduler(config: ScheduleConfig | None = None) -> DDPMScheduler:
    """The training-noise scheduler: ``add_noise`` / ``get_velocity`` with the rescaled betas."""
    return DDPMScheduler(**_common(config), clip_sample=False)


def make_ddim_scheduler(config: ScheduleConfig | None = None) -> DDIMScheduler:
    """DDIM as the reference spaces it: 50 steps give timesteps 981, 961, ..., 1; the last step lands on abar[0]."""
    return DDIMScheduler(**_common(config), clip_sample=False, set_alpha_to_one=False, steps_offset=1,
                         timestep_spacing="leading")


def make_dpmsolver_scheduler(config: ScheduleConfig | None = None, solver_order: int = 2) -> DPMSolverMultistepScheduler:
    """DPM-Solver++ (multistep). A zero-SNR schedule needs diffusers' terminal clamp (abar[-1] = 2^-24)."""
    config = config or ScheduleConfig()
    return DPMSolverMultistepScheduler(**_common(config), algorithm_type="dpmsolver++", solver_order=solver_order,
                                       timestep_spacing="trailing",
                                       rescale_betas_zero_snr=config.rescale_zero_terminal_snr)


def make_euler_scheduler(config: ScheduleConfig | None = None) -> EulerDiscreteScheduler:
    config = config or ScheduleConfig()
    return EulerDiscreteScheduler(**_common(config), timestep_spacing="trailing",
                                  rescale_betas_zero_snr=config.rescale_zero_terminal_snr)


def make_unipc_scheduler(config: ScheduleConfig | None = None) -> UniPCMultistepScheduler:
    config = config or ScheduleConfig()
    return UniPCMultistepScheduler(**_common(config), timestep_spacing="trailing",
                                   rescale_betas_zero_snr=config.rescale_zero_terminal_snr)


SCHEDULERS = {
    "ddpm": make_ddpm_scheduler,
    "ddim": make_ddim_scheduler,
    "dpmsolver++": make_dpmsolver_scheduler,
    "euler": make_euler_scheduler,
    "unipc": make_unipc_scheduler,
}


def make_scheduler(name: str, config: ScheduleConfig | None = None):
    """A diffusers scheduler by name: ``ddpm``, ``ddim``, ``dpmsolver++``, ``euler``, ``unipc``."""
    if name not in SCHEDULERS:
        raise ValueError(f"unknown scheduler {name!r}; choose from {sorted(SCHEDULERS)}")
    return SCHEDULERS[name](config)


def classifier_free_guidance(cond: torch.Tensor, uncond: torch.Tensor, scale: float,
                             rescale: float = 0.0) -> torch.Tensor:
    """uncond + scale (cond - uncond), then guidance rescale (Lin et al. 2023) towards cond's std.

    Applied to the raw model output (v). std is unbiased, over every axis but the batch; ``rescale`` mixes
    the std-matched output with the plain one (0 = off, the reference uses 0.7).
    """
    out = uncond + scale * (cond - uncond)
    if rescale > 0:
        dims = list(range(1, cond.ndim))
        std_cond = cond.std(dim=dims, keepdim=True)
        std_out = out.std(dim=dims, keepdim=True)
        # A constant output (e.g. a freshly initialised U-Net, whose last conv is zero) has std 0: keep the
        # ratio finite there; everywhere else this is the reference expression bit for bit.
        ratio = torch.where(std_out > 0, std_cond / std_out, torch.ones_like(std_out))
        out = rescale * (out * ratio) + (1 - rescale) * out
    return out
