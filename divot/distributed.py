"""Ranks for work that splits by item: evaluation and token caches under ``torchrun`` (one node or several).

The ranks never exchange tensors: each takes every ``world``-th item (``shard``), writes its own files, and
waits at a ``barrier`` before rank 0 merges them. So the process group is always gloo (TCP; it needs no GPU
and works across nodes); the models themselves run on each rank's own device (``local_device``).

Entry points call ``init_from_env()`` (a no-op outside a launcher); the library only asks ``rank_world()``.

    torchrun --nproc_per_node 4 -m divot.cli eval egoschema --questions q.json --videos v/ --out runs/ego
"""

from __future__ import annotations

import logging
import os
from datetime import timedelta

logger = logging.getLogger(__name__)

# Ranks meet at a barrier when their shares are done; a share can take hours, so the wait must not time out
# before the slowest rank. A rank that dies is noticed by torchrun, which stops the others.
BARRIER_TIMEOUT = timedelta(hours=24)


def launched() -> bool:
    """True under a launcher (torchrun, srun + torchrun) that asked for more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_from_env() -> tuple[int, int]:
    """Join the launcher's process group (gloo) when there is one; returns (rank, world size)."""
    import torch.distributed as dist

    if launched() and not dist.is_initialized():
        dist.init_process_group("gloo", timeout=BARRIER_TIMEOUT)
        logger.info("rank %d of %d (local rank %s)", dist.get_rank(), dist.get_world_size(),
                    os.environ.get("LOCAL_RANK", "0"))
    return rank_world()


def rank_world() -> tuple[int, int]:
    """(rank, world size) of the initialised process group, else (0, 1)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def barrier() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def all_gather(value) -> list:
    """Every rank's ``value`` (a picklable object), in rank order; ``[value]`` without a process group."""
    import torch.distributed as dist

    rank, world = rank_world()
    if world == 1:
        return [value]
    out = [None] * world
    dist.all_gather_object(out, value)
    return out


def shard(items: list, rank: int, world: int) -> list:
    """The items of ``rank``: every ``world``-th, starting at ``rank`` (deterministic, balanced to one item)."""
    return items[rank::world]


def local_device(device):
    """``cuda`` without an index means this process's GPU (``cuda:LOCAL_RANK``) under a launcher."""
    import torch

    device = torch.device(device)
    if device.type == "cuda" and device.index is None and launched():
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    return device


def finish() -> None:
    """Leave the process group (at the end of an entry point)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
