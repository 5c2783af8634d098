"""Sampling with a diffusers scheduler and classifier-free guidance on the model's v-prediction.

The de-tokenizer is any ``denoise_fn(x, t, context) -> v`` callable (the U-Net with fs bound, a compiled
copy, a stub in tests). Schedulers come from ``divot.diffusion.schedule`` (``make_ddim_scheduler`` etc.).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import torch
from tqdm.auto import tqdm

from divot.diffusion.schedule import classifier_free_guidance

DenoiseFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def guided_prediction(denoise_fn: DenoiseFn, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor,
                      uncond: torch.Tensor | None, guidance: float, rescale: float) -> torch.Tensor:
    """Two separate model calls (conditional, unconditional) combined by CFG + rescale; cond only if no guidance."""
    if uncond is None or guidance == 1.0:
        return denoise_fn(x, t, cond)
    v_cond = denoise_fn(x, t, cond)
    v_uncond = denoise_fn(x, t, uncond)
    return classifier_free_guidance(v_cond, v_uncond, guidance, rescale)


@torch.no_grad()
def sample_with_scheduler(unet_fn: DenoiseFn, scheduler, x_T: torch.Tensor, cond: torch.Tensor,
                          uncond: torch.Tensor | None = None, guidance: float = 7.5, rescale: float = 0.7,
                          num_steps: int = 50, generator: torch.Generator | None = None, progress: bool = True,
                          eta: float = 0.0) -> torch.Tensor:
    """Run a diffusers scheduler from noise ``x_T`` (b, c, t, h, w) to x_0.

    ``unet_fn(x, t, context)`` returns v for t of shape (b,). ``eta`` reaches schedulers whose ``step``
    takes it (DDIM); ``generator`` those that draw noise (DDIM with eta > 0, DDPM, SDE solvers).
    The scheduler's timestep table is reset by ``set_timesteps(num_steps)``.
    """
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    if cond.shape[0] != x_T.shape[0] or (uncond is not None and uncond.shape[0] != x_T.shape[0]):
        raise ValueError(f"cond / uncond batch must equal x_T's ({x_T.shape[0]}), got {cond.shape[0]}"
                         f"{'' if uncond is None else f' / {uncond.shape[0]}'}")
    scheduler.set_timesteps(num_steps, device=x_T.device)
    accepted = inspect.signature(scheduler.step).parameters
    step_kwargs = {}
    if "generator" in accepted:
        step_kwargs["generator"] = generator
    if "eta" in accepted:
        step_kwargs["eta"] = eta
    x = x_T * scheduler.init_noise_sigma
    b = x.shape[0]
    for t in tqdm(scheduler.timesteps, desc=type(scheduler).__name__, disable=not progress):
        x_in = scheduler.scale_model_input(x, t)
        t_batch = t.reshape(1).expand(b).to(x.device)
        v = guided_prediction(unet_fn, x_in, t_batch, cond, uncond, guidance, rescale).to(x.dtype)
        x = scheduler.step(v, t, x, **step_kwargs).prev_sample
    return x
