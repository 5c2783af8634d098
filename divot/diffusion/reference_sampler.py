"""The reference DDIM sampler, reproduced bit for bit (``DETOKENIZER.md`` section 13).

Use it to reproduce published samples; for everything else use ``sample_with_scheduler`` with a diffusers
scheduler (re-exported here). What makes it "reference": "uniform" spacing (timesteps 1, 1 + c, ...,
c = 1000 // steps), DDIM tables built from float16-rounded alphas_cumprod, the v -> eps / x0 conversions on the
float32 schedule at the actual timestep, guidance + rescale on v, and exactly one Gaussian draw per step even
when sigma is 0 (so the random stream matches).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from divot.diffusion.config import ScheduleConfig
from divot.diffusion.sampling import DenoiseFn, guided_prediction, sample_with_scheduler
from divot.diffusion.schedule import make_alphas_cumprod

logger = logging.getLogger(__name__)

__all__ = ["DenoiseFn", "ReferenceDDIMTables", "reference_ddim_sample", "reference_ddim_tables",
           "sample_with_scheduler"]


@dataclass
class ReferenceDDIMTables:
    timesteps: torch.Tensor  # (s,) int64 ascending: 1, 1 + c, ...
    alphas_prev: torch.Tensor  # (s,) float64: abar16[0], abar16[timesteps[:-1]]
    sigmas: torch.Tensor  # (s,) float64
    sqrt_alphas_cumprod: torch.Tensor  # (num_train_timesteps,) float32
    sqrt_one_minus_alphas_cumprod: torch.Tensor  # (num_train_timesteps,) float32

    @property
    def num_steps(self) -> int:
        return self.timesteps.shape[0]


def reference_ddim_tables(num_steps: int, eta: float, schedule: ScheduleConfig | None = None) -> ReferenceDDIMTables:
    """The reference sampler's tables, including its float16 rounding of alphas_cumprod.

    As in the reference, ``range(0, T, T // num_steps)`` may give more than ``num_steps`` steps when
    ``num_steps`` does not divide T (e.g. 30 -> 31).
    """
    schedule = schedule or ScheduleConfig()
    total = schedule.num_train_timesteps
    if not 1 <= num_steps <= total:
        raise ValueError(f"num_steps must be in 1..{total}, got {num_steps}")
    abar64 = make_alphas_cumprod(schedule)
    abar16 = abar64.float().half()  # the reference builds its tables from an fp16 copy
    timesteps = torch.arange(0, total, total // num_steps) + 1
    if timesteps[-1] >= total:
        raise ValueError(f"{num_steps} uniform steps overflow the {total}-step schedule")
    a = abar16[timesteps]  # fp16
    a_prev = torch.cat([abar16[:1], abar16[timesteps[:-1]]]).double()
    # (1 - a_prev) / (1 - a) with a numpy numerator: torch computes reciprocal(1 - a) in fp16 first.
    ratio = (1 - a).reciprocal().double() * (1 - a_prev)
    # The reference takes this square root with numpy (torch's differs in the last bit for some inputs).
    sigmas = eta * torch.from_numpy(np.sqrt((ratio * (1 - a.double() / a_prev)).numpy()))
    return ReferenceDDIMTables(timesteps=timesteps, alphas_prev=a_prev, sigmas=sigmas,
                               sqrt_alphas_cumprod=abar64.sqrt().float(),
                               sqrt_one_minus_alphas_cumprod=(1.0 - abar64).sqrt().float())


def _noise_source(step_noise, num_steps: int, generator: torch.Generator | None) -> Callable:
    if step_noise is None:
        return lambda i, x: torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    if len(step_noise) != num_steps:
        raise ValueError(f"step_noise must hold {num_steps} tensors (one per step), got {len(step_noise)}")

    def take(i: int, x: torch.Tensor) -> torch.Tensor:
        noise = step_noise[i]
        if tuple(noise.shape) != tuple(x.shape):
            raise ValueError(f"step_noise[{i}] has shape {tuple(noise.shape)}, expected {tuple(x.shape)}")
        return noise.to(device=x.device, dtype=x.dtype)

    return take


@torch.no_grad()
def reference_ddim_sample(denoise_fn: DenoiseFn, cond: torch.Tensor, uncond: torch.Tensor | None = None, *,
                          shape: Sequence[int] | None = None, x_T: torch.Tensor | None = None,
                          num_steps: int = 50, eta: float = 1.0, guidance: float = 7.5,
                          guidance_rescale: float = 0.7,
                          step_noise: torch.Tensor | Sequence[torch.Tensor] | None = None,
                          generator: torch.Generator | None = None, schedule: ScheduleConfig | None = None,
                          progress: bool = True) -> torch.Tensor:
    """Sample latents (b, c, t, h, w) with the reference DDIM update; returns x_0.

    ``denoise_fn(x, t, context)`` returns the model's v for x (b, c, t, h, w), t (b,) int64 and a context
    (e.g. ``functools.partial(unet, fs=fs)``). Give the initial noise ``x_T`` or a ``shape`` (then drawn
    with ``generator`` on cond's device, as the reference does). ``step_noise``: one tensor per step in
    sampling order (high t first), else drawn from ``generator``. With ``uncond`` None or ``guidance`` 1 the
    conditional prediction is used alone.
    """
    if (x_T is None) == (shape is None):
        raise ValueError("give exactly one of x_T (initial noise) or shape")
    tables = reference_ddim_tables(num_steps, eta, schedule)
    if tables.num_steps != num_steps:
        logger.warning("uniform spacing: %d steps requested, the reference schedule takes %d",
                       num_steps, tables.num_steps)
    x = torch.randn(tuple(shape), generator=generator, device=cond.device) if x_T is None else x_T.clone()
    noise_for = _noise_source(step_noise, tables.num_steps, generator)
    b = x.shape[0]
    bshape = (b,) + (1,) * (x.ndim - 1)
    sqrt_ac = tables.sqrt_alphas_cumprod.to(x.device)
    sqrt_1m_ac = tables.sqrt_one_minus_alphas_cumprod.to(x.device)
    for i in tqdm(range(tables.num_steps), desc="DDIM (reference)", disable=not progress):
        index = tables.num_steps - 1 - i
        t = torch.full((b,), int(tables.timesteps[index]), device=x.device, dtype=torch.long)
        v = guided_prediction(denoise_fn, x, t, cond, uncond, guidance, guidance_rescale).to(x.dtype)
        sa = sqrt_ac.gather(-1, t).reshape(bshape)
        s1m = sqrt_1m_ac.gather(-1, t).reshape(bshape)
        eps = sa * v + s1m * x
        x0 = sa * x - s1m * v
        a_prev = torch.full(bshape, float(tables.alphas_prev[index]), device=x.device, dtype=torch.float32)
        sigma = torch.full(bshape, float(tables.sigmas[index]), device=x.device, dtype=torch.float32)
        dir_xt = (1.0 - a_prev - sigma**2).sqrt() * eps
        noise = sigma * noise_for(i, x)
        x = a_prev.sqrt() * x0 + dir_xt + noise
    return x
