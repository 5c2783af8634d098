"""Model CPU offload (the diffusers pattern): whole models wait on the CPU and move to the execution device
only while they run, one at a time.

Each model gets accelerate's ``cpu_offload_with_hook``; the hooks are chained in the order the models run, so
calling a model first sends the previous one back to the CPU. In the de-tokenizer the condition resampler runs
once, the U-Net once per sampling step (it stays on the device for the whole loop), the VAE once at the end:
the device holds the largest of the three instead of their sum, for two host <-> device copies per model and
call of ``decode``. (accelerate's ``cpu_offload``, which streams each layer in at every step, would save more
memory but copy the whole U-Net at every step.)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def install_cpu_offload(modules: Sequence[nn.Module], device: str | torch.device) -> list:
    """Hook ``modules`` (in the order they run) to move to ``device`` when called and send the previous one
    back to the CPU; they are moved to the CPU now. Returns accelerate's ``UserCpuOffloadHook``s, in order."""
    from accelerate import cpu_offload_with_hook

    hooks, previous = [], None
    for module in modules:
        _, previous = cpu_offload_with_hook(module, execution_device=torch.device(device),
                                            prev_module_hook=previous)
        hooks.append(previous)
    return hooks


def offload_all(hooks: Sequence) -> None:
    """Send every hooked module back to the CPU (the last one is never sent back by a later call)."""
    for hook in hooks:
        hook.offload()


def remove_cpu_offload(hooks: Sequence) -> None:
    """Remove the hooks; the modules stay where they are (on the CPU after ``offload_all``)."""
    for hook in hooks:
        hook.remove()
