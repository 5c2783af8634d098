"""DeepSpeed ZeRO-3 from the first parameter on, and the float32 master weights at export.

Without ``partitioned_build`` every process would build the whole float32 Divot-LLM before
``deepspeed.initialize`` splits it, so ZeRO-3 and parameter offload would save nothing at load time. Inside it,
a ``transformers`` ``HfDeepSpeedConfig`` is alive (transformers then creates the LLM partitioned, loads a
pretrained LLM on rank 0 straight into the partitions and resizes its embeddings gathered) and
``deepspeed.zero.Init`` runs with the run's DeepSpeed config, so the input projection and the GMM head are
partitioned as they are created too, in the config's dtype (bfloat16 when the config enables ``bf16``). The
Divot rows of a grown vocabulary are written gathered on rank 0 (``divot.llm.tokens.resize_embeddings``).

A preset's random initialisation under ZeRO-3 is transformers' ZeRO-3 initialiser (rank 0 draws, module by
module): the same distributions as a one-process build, other draws; the fresh projections are other draws
too (the random stream reaches them in another state). A pretrained LLM loads the same weights. A saved
DivotLLM directory is still built whole on each process (its projections load unpartitioned).

Known DeepSpeed behaviour (0.19.8, seen on the CPU): a trained part that no rank used in a step (the GMM head
in a step without generation samples) is updated from a stale gradient in an uninterrupted ZeRO-3 run but a
zero one after resuming, so such a step is where a resumed run leaves the uninterrupted one.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn


@contextlib.contextmanager
def partitioned_build(ds_config: dict) -> Iterator[object]:
    """Modules created inside are ZeRO-3 partitioned. Yields the ``HfDeepSpeedConfig``: keep it referenced
    for the whole run, transformers looks it up (weakly) whenever it must act differently under ZeRO-3."""
    import deepspeed
    from transformers.integrations import HfDeepSpeedConfig

    stage = ds_config.get("zero_optimization", {}).get("stage")
    if stage != 3:
        raise ValueError(f"partitioned_build needs a ZeRO-3 config, got zero_optimization.stage={stage}")
    # zero.Init replaces torch.Tensor.__new__ while it is open; torch._dynamo (imported by transformers'
    # model modules) checks that signature when it is first imported, so it must be imported before.
    import torch._dynamo  # noqa: F401
    import transformers.generation  # noqa: F401

    hf_config = HfDeepSpeedConfig(ds_config)
    with deepspeed.zero.Init(config_dict_or_path=ds_config):
        yield hf_config


def is_partitioned(param: nn.Parameter) -> bool:
    return hasattr(param, "ds_id")


def gathered(params: list[nn.Parameter], modifier_rank: int | None = None):
    """The ZeRO-3 partitioned ones among ``params`` whole inside the block; a no-op without any."""
    params = [p for p in params if is_partitioned(p)]
    if not params:
        return contextlib.nullcontext()
    import deepspeed

    return deepspeed.zero.GatheredParameters(params, modifier_rank=modifier_rank)


def master_weights(params: list[nn.Parameter], keep: bool) -> list[torch.Tensor | None]:
    """Full float32 values of ``params`` on the CPU: DeepSpeed's float32 master copy of a trained parameter
    (under ``bf16`` the module holds bfloat16 copies), else the parameter itself (gathered under ZeRO-3).

    Collective: every rank calls it with the same parameters; ranks with ``keep=False`` get Nones."""
    from deepspeed.utils import safe_get_full_fp32_param

    out: list[torch.Tensor | None] = []
    for p in params:
        full = safe_get_full_fp32_param(p) if p.requires_grad else None
        if full is None:
            with gathered([p]):
                full = p.detach().float().clone() if keep else None
        out.append(full.detach().float().cpu() if keep else None)
    return out


@contextlib.contextmanager
def swapped_data(params: list[nn.Parameter], values: list[torch.Tensor]) -> Iterator[None]:
    """``p.data = value`` for each pair inside the block (e.g. float32 weights for saving), restored after."""
    saved = [p.data for p in params]
    try:
        for p, value in zip(params, values, strict=True):
            p.data = value
        yield
    finally:
        for p, data in zip(params, saved, strict=True):
            p.data = data
