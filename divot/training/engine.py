"""Run optimisation steps on one process (plain PyTorch) or on several (DeepSpeed ZeRO-2 / ZeRO-3).

Both engines expose the same small interface used by the training scripts::

    out = engine(batch)            # the wrapped module's forward: a dict with "loss"
    engine.backward(out["loss"])   # scaled for gradient accumulation
    stepped, grad_norm = engine.step()   # clips, steps the optimiser and the schedule at accumulation boundaries

Precision "bf16":
  - one process (``TorchEngine``): bfloat16 autocast around the forward; float32 weights and optimiser state.
  - DeepSpeed, when the caller passes ``bf16=True`` (the LLM trainer does; the tokenizer trainer keeps autocast):
    DeepSpeed's own bf16 mode (``deepspeed_config`` adds ``bf16: {enabled: true}``, the caller drops the autocast): the module's weights, activations and gradients are bfloat16, the
    optimiser keeps float32 master weights and moments (sharded; on the CPU with ZeRO-Offload, where
    DeepSpeed's CPU Adam updates them). This halves the weights' and gradients' memory and communication,
    which is what ZeRO-3 and parameter offload are for; autocast would keep float32 weights. There is no loss
    scaling in bf16; clipping acts on the float32 gradients. The losses stay float32 maths (the LM
    cross-entropy and the GMM log-probabilities cast to float32 first). The master weights start from the
    bfloat16-rounded weights, and frozen parts run in bfloat16; exports write the float32 master weights
    (``divot.training.zero.master_weights``).
"""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from divot.training.optim import OptimConfig, build_optimizer, build_scheduler

logger = logging.getLogger(__name__)


def world_info() -> tuple[int, int, int]:
    """(rank, world size, local rank) from the launcher's environment (torchrun / deepspeed), else (0, 1, 0)."""
    return (int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
            int(os.environ.get("LOCAL_RANK", 0)))


def pick_device(name: str | None, local_rank: int = 0) -> torch.device:
    """``name`` if given, else the local CUDA device when there is one, else the CPU."""
    if name:
        return torch.device(name)
    return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def all_reduce_mean(value: float, device: torch.device) -> float:
    if not (dist.is_available() and dist.is_initialized()):
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return float(t.item()) / dist.get_world_size()


class TorchEngine:
    """Single-process training: AdamW, warm-up + cosine, clipping, accumulation."""

    is_deepspeed = False

    def __init__(self, module: nn.Module, named_params: list[tuple[str, nn.Parameter]], cfg: OptimConfig,
                 lr_scales: dict[str, float] | None = None, zero_unused_grads: bool = False):
        self.module = module
        self.cfg = cfg
        self.params = [p for _, p in named_params]
        self.optimizer = build_optimizer(named_params, cfg, lr_scales)
        self.scheduler = build_scheduler(self.optimizer, cfg)
        self.micro_step = 0
        # A parameter no sample of the step used has no gradient: AdamW would skip it. With this flag it gets
        # a zero gradient instead (its moments decay, weight decay applies), which is what DeepSpeed's ZeRO
        # optimisers do, so one process and many take the same steps.
        self.zero_unused_grads = zero_unused_grads

    def __call__(self, *args, **kwargs):
        return self.module(*args, **kwargs)

    def backward(self, loss: torch.Tensor) -> None:
        (loss / self.cfg.grad_accum).backward()
        self.micro_step += 1

    def step(self) -> tuple[bool, float | None]:
        if self.micro_step % self.cfg.grad_accum:
            return False, None
        norm = None
        if self.zero_unused_grads:
            for p in self.params:
                if p.grad is None:
                    p.grad = torch.zeros_like(p)
        if self.cfg.grad_clip > 0:
            norm = float(torch.nn.utils.clip_grad_norm_(self.params, self.cfg.grad_clip))
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return True, norm

    @property
    def lr(self) -> float:
        return max(g["lr"] for g in self.optimizer.param_groups)

    def save(self, folder: Path, is_main: bool) -> dict:
        """Extra state for ``trainer.pt`` (the optimiser lives there for this engine)."""
        return {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "micro_step": self.micro_step}

    def load(self, folder: Path, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.micro_step = state["micro_step"]


def deepspeed_config(cfg: OptimConfig, micro_batch_size: int, world_size: int, extra: dict | None = None,
                     bf16: bool = False) -> dict:
    """A DeepSpeed config built from the run config (one source of truth), ZeRO stage 2 by default.

    ``extra`` (a user's JSON, e.g. ``configs/deepspeed/zero2.json``) may tune ``zero_optimization`` and the
    communication settings; batch sizes, accumulation, clipping and precision (``bf16``: DeepSpeed's bf16
    mode, see the module docstring) always come from the run config.
    """
    config = {"zero_optimization": {"stage": 2, "overlap_comm": False, "contiguous_gradients": True},
              "steps_per_print": 10**9, "wall_clock_breakdown": False}
    for key, value in (extra or {}).items():
        if key in ("train_batch_size", "train_micro_batch_size_per_gpu", "gradient_accumulation_steps",
                   "gradient_clipping", "optimizer", "scheduler", "fp16", "bf16"):
            raise ValueError(f"deepspeed config key {key!r} is set by the run config (optim.* / batch_size / "
                             "precision); remove it from the DeepSpeed JSON")
        config[key] = value
    config.update(train_micro_batch_size_per_gpu=micro_batch_size, gradient_accumulation_steps=cfg.grad_accum,
                  train_batch_size=micro_batch_size * cfg.grad_accum * world_size,
                  gradient_clipping=cfg.grad_clip)
    if bf16:
        config["bf16"] = {"enabled": True}
    return config


class DeepSpeedEngine:
    """The same interface over ``deepspeed.initialize`` (ZeRO-2: optimiser state and gradients sharded; ZeRO-3
    also the parameters, when ``extra_config`` says so). With ZeRO-Offload of the optimiser
    (``zero_optimization.offload_optimizer``) the AdamW is DeepSpeed's CPU Adam (same update rule). ``bf16``:
    DeepSpeed's bf16 mode (module docstring). A ZeRO-3 module may come already partitioned
    (``divot.training.zero.partitioned_build`` with the same config)."""

    is_deepspeed = True

    def __init__(self, module: nn.Module, named_params: list[tuple[str, nn.Parameter]], cfg: OptimConfig,
                 micro_batch_size: int, extra_config: dict | None = None, lr_scales: dict[str, float] | None = None,
                 bf16: bool = False):
        import deepspeed

        self.cfg = cfg
        offload = (extra_config or {}).get("zero_optimization", {}).get("offload_optimizer", {})
        offload = offload.get("device", "none") not in ("none", None) if isinstance(offload, dict) else False
        optimizer = build_optimizer(named_params, cfg, lr_scales, cpu_adam=offload)
        scheduler = build_scheduler(optimizer, cfg)
        config = deepspeed_config(cfg, micro_batch_size, dist.get_world_size(), extra_config, bf16=bf16)
        self.bf16 = bf16
        with _scalar_safe_broadcast():
            self.engine, self.optimizer, _, self.scheduler = deepspeed.initialize(
                model=module, optimizer=optimizer, lr_scheduler=scheduler, config=config)
        self.module = module
        self.zero_stage = int(self.engine.zero_optimization_stage())

    def __call__(self, *args, **kwargs):
        return self.engine(*args, **kwargs)

    def backward(self, loss: torch.Tensor) -> None:
        self.engine.backward(loss)  # DeepSpeed divides by the accumulation steps itself

    def step(self) -> tuple[bool, float | None]:
        boundary = self.engine.is_gradient_accumulation_boundary()
        self.engine.step()
        if not boundary:
            return False, None
        norm = self.engine.get_global_grad_norm()
        return True, None if norm is None else float(norm)

    @property
    def lr(self) -> float:
        return max(g["lr"] for g in self.optimizer.param_groups)

    def save(self, folder: Path, is_main: bool) -> dict:
        self.engine.save_checkpoint(str(folder), tag="deepspeed", save_latest=False)  # every rank writes
        return {}

    def load(self, folder: Path, state: dict) -> None:
        path, _ = self.engine.load_checkpoint(str(folder), tag="deepspeed", load_module_strict=True)
        if path is None:
            raise FileNotFoundError(f"no DeepSpeed checkpoint in {folder}/deepspeed")


@contextmanager
def _scalar_safe_broadcast():
    """DeepSpeed (0.19) broadcasts every parameter as ``p.data.view(torch.uint8)`` when it starts, which fails
    for 0-dim parameters such as the U-Net's image-gate ``alpha``. Give those a 1-element shape for the
    broadcast only; the optimiser wrappers built afterwards see the real shapes."""
    from deepspeed.runtime.engine import DeepSpeedEngine as _Engine

    original = _Engine._broadcast_model

    def broadcast(engine):
        scalars = [p for p in engine.module.parameters() if p.dim() == 0]
        for p in scalars:
            p.data = p.data.reshape(1)
        try:
            original(engine)
        finally:
            for p in scalars:
                p.data = p.data.reshape(())

    _Engine._broadcast_model = broadcast
    try:
        yield
    finally:
        _Engine._broadcast_model = original


def init_distributed(backend: str | None = None) -> None:
    """Initialise the process group the launcher asked for (gloo on CPU, nccl on CUDA)."""
    import deepspeed

    if not dist.is_initialized():
        deepspeed.init_distributed(dist_backend=backend or ("nccl" if torch.cuda.is_available() else "gloo"))
