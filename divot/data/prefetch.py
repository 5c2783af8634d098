"""Decode videos in background processes while the main process runs the model.

``prefetch(items, load, num_workers)`` yields ``(item, load(item))`` in the order of ``items``, computing
``load`` in ``num_workers`` DataLoader worker processes (0: in the main process, one item at a time). A
``load`` that raises one of ``errors`` yields a ``LoadFailed`` record instead, so one bad video costs one
record, never the run; any other exception stops the run as it would in the main process.

``load`` runs in a worker: give it only what decoding needs (a path, a frame size), not a model. Workers are
forked on Linux; under the spawn start method ``load`` and the items must be picklable (a module-level
function, ``functools.partial`` or a small class).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from torch.utils.data import DataLoader, Dataset


@dataclass(frozen=True)
class LoadFailed:
    """What a worker returns for an item it could not load: the exception's type name and message."""

    error: str
    kind: str = "Exception"


class _Loaded(Dataset):
    def __init__(self, items: Sequence, load: Callable, errors: tuple[type[BaseException], ...]):
        self.items, self.load, self.errors = items, load, errors

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        try:
            return self.load(self.items[i])
        except self.errors as err:
            return LoadFailed(str(err), type(err).__name__)


def _as_is(sample):
    return sample


def prefetch(items: Sequence, load: Callable, num_workers: int = 0,
             errors: tuple[type[BaseException], ...] = (), prefetch_factor: int = 2) -> Iterator[tuple]:
    """``(item, load(item) or LoadFailed)`` for every item, in order; ``num_workers`` processes load ahead
    (each at most ``prefetch_factor`` items)."""
    if num_workers < 0:
        raise ValueError(f"num_workers must be >= 0, got {num_workers}")
    dataset = _Loaded(items, load, errors)
    if num_workers == 0 or len(items) <= 1:
        for i, item in enumerate(items):
            yield item, dataset[i]
        return
    loader = DataLoader(dataset, batch_size=None, num_workers=min(num_workers, len(items)), collate_fn=_as_is,
                        prefetch_factor=prefetch_factor)
    yield from zip(items, loader, strict=True)


def available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def default_num_workers(device=None) -> int:
    """Decoding processes per rank: up to 4 (8 beside a GPU), leaving one core per process for the model."""
    local = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    per_rank = max(1, available_cpus() // local)
    cap = 8 if device is not None and getattr(device, "type", str(device)) == "cuda" else 4
    return max(1, min(cap, per_rank - 1))
