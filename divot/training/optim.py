"""AdamW with warm-up + cosine decay, the optimiser settings shared by every training stage."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class OptimConfig:
    lr: float = 1e-4
    weight_decay: float = 0.01  # not applied to biases, norms, embeddings tables and other 1-D tensors
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    warmup_steps: int = 500
    max_steps: int = 10000  # optimiser steps (after gradient accumulation)
    min_lr_ratio: float = 0.1  # the cosine decays to lr * min_lr_ratio at max_steps
    grad_clip: float = 1.0  # max global gradient norm; 0 disables clipping
    grad_accum: int = 1  # micro-batches per optimiser step

    def __post_init__(self):
        self.betas = tuple(self.betas)
        if self.lr <= 0 or self.max_steps < 1 or self.grad_accum < 1 or self.warmup_steps < 0:
            raise ValueError(f"need lr > 0, max_steps >= 1, grad_accum >= 1, warmup_steps >= 0; got {self}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ValueError(f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")


def param_groups(named_params: list[tuple[str, nn.Parameter]], weight_decay: float, lr: float,
                 lr_scales: dict[str, float] | None = None) -> list[dict]:
    """AdamW groups: matrices decay, 1-D tensors (biases, norm scales, gates) do not; parameters whose name
    starts with a key of ``lr_scales`` get ``lr * scale`` (e.g. a slower tokenizer under a fresh U-Net)."""
    groups: dict[tuple[float, float], list] = {}
    for name, p in named_params:
        scale = next((s for prefix, s in (lr_scales or {}).items() if name.startswith(prefix)), 1.0)
        groups.setdefault((weight_decay if p.ndim >= 2 else 0.0, lr * scale), []).append(p)
    return [{"params": ps, "weight_decay": wd, "lr": group_lr} for (wd, group_lr), ps in groups.items()]


def build_optimizer(named_params: list[tuple[str, nn.Parameter]], cfg: OptimConfig,
                    lr_scales: dict[str, float] | None = None, cpu_adam: bool = False) -> torch.optim.Optimizer:
    """AdamW over ``named_params``; ``cpu_adam``: DeepSpeed's CPU AdamW (for ZeRO-Offload), same update."""
    if not named_params:
        raise ValueError("nothing to train: no parameter requires gradients")
    if cpu_adam:
        from deepspeed.ops.adam import DeepSpeedCPUAdam

        return DeepSpeedCPUAdam(param_groups(named_params, cfg.weight_decay, cfg.lr, lr_scales), lr=cfg.lr,
                                betas=cfg.betas, eps=cfg.eps, adamw_mode=True)
    return torch.optim.AdamW(param_groups(named_params, cfg.weight_decay, cfg.lr, lr_scales), lr=cfg.lr,
                             betas=cfg.betas, eps=cfg.eps)


def lr_factor(step: int, cfg: OptimConfig) -> float:
    """Multiplier of the base learning rate at optimiser step ``step`` (0-based): linear warm-up, cosine."""
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    span = max(1, cfg.max_steps - cfg.warmup_steps)
    progress = min(1.0, (step - cfg.warmup_steps) / span)
    return cfg.min_lr_ratio + (1.0 - cfg.min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: OptimConfig) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, cfg))
