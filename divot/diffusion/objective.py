"""The denoising objective that trains the de-tokenizer (and, in stage T1, the tokenizer through it).

    x_0 (b, c, t, h, w) --diffusers DDPMScheduler.add_noise(noise, timestep)--> x_t
    loss = weighted mean of (U-Net(x_t, timestep, context) - target)^2,  target = v (or epsilon, or x_0)

``foreground_weight`` > 1 weights the pixels that differ from the clip's background (its per-channel median)
more heavily: on sparse scenes (the shapes world) the object is a few percent of the pixels and an unweighted
loss is dominated by the empty background (DESIGN section 9). The paper preset keeps it at 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from divot.diffusion.config import ScheduleConfig
from divot.diffusion.schedule import make_ddpm_scheduler


@dataclass
class LossConfig:
    foreground_weight: float = 1.0  # weight of object pixels relative to background ones
    foreground_threshold: float = 0.2  # |x_0 - clip median| (any channel, in x_0 units) that marks an object
    # Timesteps t = floor(T (1 - u^p)), u uniform: p = 1 is uniform; p > 1 favours high noise levels, where the
    # denoiser can only succeed through the condition (a tiny-preset training aid).
    timestep_power: float = 1.0

    def __post_init__(self):
        if self.foreground_weight < 1.0 or self.foreground_threshold <= 0 or self.timestep_power <= 0:
            raise ValueError(f"need foreground_weight >= 1, foreground_threshold > 0, timestep_power > 0; got {self}")


def foreground_mask(x0: torch.Tensor, threshold: float) -> torch.Tensor:
    """(b, 1, t, h, w) bool: where any channel of x_0 (b, c, t, h, w) differs from the clip's median by more
    than ``threshold`` (a plain background is the median)."""
    b, c = x0.shape[:2]
    median = x0.reshape(b, c, -1).median(dim=-1).values[:, :, None, None, None]  # (b, c, 1, 1, 1)
    return ((x0 - median).abs() > threshold).any(dim=1, keepdim=True)


def foreground_weights(x0: torch.Tensor, weight: float, threshold: float) -> torch.Tensor:
    """(b, 1, t, h, w) per-position weights: ``weight`` where x_0 differs from the clip's median, else 1."""
    return 1.0 + (weight - 1.0) * foreground_mask(x0, threshold).float()


class DenoisingObjective:
    """Noise, timesteps and the weighted MSE of v-prediction (or epsilon-prediction)."""

    def __init__(self, schedule: ScheduleConfig, loss: LossConfig | None = None):
        self.schedule = schedule
        self.loss_cfg = loss or LossConfig()
        self.scheduler = make_ddpm_scheduler(schedule)

    def draw(self, x0: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Gaussian noise like x_0 and uniform integer timesteps (b,)."""
        noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=torch.float32)
        num = self.schedule.num_train_timesteps
        if self.loss_cfg.timestep_power == 1.0:
            t = torch.randint(0, num, (x0.shape[0],), generator=generator, device=x0.device)
        else:
            u = torch.rand(x0.shape[0], generator=generator, device=x0.device)
            t = ((1.0 - u**self.loss_cfg.timestep_power) * num).long().clamp(0, num - 1)
        return noise, t

    def target_and_input(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor):
        x0 = x0.float()
        x_t = self.scheduler.add_noise(x0, noise, t)
        kind = self.schedule.prediction_type
        if kind == "v_prediction":
            target = self.scheduler.get_velocity(x0, noise, t)
        else:
            target = x0 if kind == "sample" else noise
        return x_t, target

    def per_sample_loss(self, denoise_fn, x0: torch.Tensor, context: torch.Tensor, noise: torch.Tensor,
                        t: torch.Tensor) -> torch.Tensor:
        """(b,) weighted mean squared error of ``denoise_fn(x_t, t, context)`` against the target."""
        x_t, target = self.target_and_input(x0, noise, t)
        pred = denoise_fn(x_t, t, context).float()
        err = (pred - target) ** 2  # (b, c, t, h, w)
        cfg = self.loss_cfg
        if cfg.foreground_weight != 1.0:
            w = foreground_weights(x0.float(), cfg.foreground_weight, cfg.foreground_threshold)
            return (err * w).sum(dim=(1, 2, 3, 4)) / (w.sum(dim=(1, 2, 3, 4)) * err.shape[1])
        return err.mean(dim=(1, 2, 3, 4))

    def __call__(self, denoise_fn, x0: torch.Tensor, context: torch.Tensor,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        noise, t = self.draw(x0, generator)
        return self.per_sample_loss(denoise_fn, x0, context, noise, t).mean()
