"""Atomic, resumable training checkpoints.

Layout under ``root``::

    step-00000100/      one complete checkpoint (written as step-00000100.tmp/, renamed when complete)
        trainer.pt      step, data position, EMA, optimiser/scheduler (single process), config
        rng-rank0.pt    the random state of each process
        deepspeed/      the DeepSpeed engine's files (multi-process runs)
    latest              the name of the newest complete checkpoint

A run killed while saving leaves only a ``.tmp`` folder, which is ignored and removed by the next save.
"""

from __future__ import annotations

import logging
import random
import re
import shutil
from pathlib import Path

import numpy as np
import torch

from divot.hub import atomic_write_text

logger = logging.getLogger(__name__)

_STEP_DIR = re.compile(r"^step-(\d+)$")


def rng_state() -> dict:
    """Python, NumPy and torch (CPU + CUDA) random states."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class CheckpointManager:
    """Names, finalises, finds and prunes the step checkpoints of one run directory."""

    def __init__(self, root: str | Path, keep: int = 3):
        if keep < 1:
            raise ValueError(f"keep must be >= 1, got {keep}")
        self.root = Path(root)
        self.keep = keep

    def staging_dir(self, step: int) -> Path:
        """The folder a checkpoint is written into before it is complete (created empty)."""
        tmp = self.root / f"step-{step:08d}.tmp"
        return tmp

    def prepare(self, step: int) -> Path:
        tmp = self.staging_dir(step)
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        return tmp

    def finalize(self, step: int) -> Path:
        """Rename the staged folder into place, point ``latest`` at it, prune old ones (main process only)."""
        tmp, final = self.staging_dir(step), self.root / f"step-{step:08d}"
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
        atomic_write_text(self.root / "latest", final.name + "\n")
        for old in self.complete()[: -self.keep]:
            shutil.rmtree(old, ignore_errors=True)
        for stale in self.root.glob("step-*.tmp"):
            shutil.rmtree(stale, ignore_errors=True)
        logger.info("checkpoint saved: %s", final)
        return final

    def complete(self) -> list[Path]:
        """Complete checkpoints, oldest first."""
        if not self.root.is_dir():
            return []
        dirs = [p for p in self.root.iterdir() if p.is_dir() and _STEP_DIR.match(p.name)]
        return sorted(dirs, key=lambda p: int(_STEP_DIR.match(p.name).group(1)))

    def latest(self) -> Path | None:
        pointer = self.root / "latest"
        if pointer.is_file():
            candidate = self.root / pointer.read_text().strip()
            if (candidate / "trainer.pt").is_file():
                return candidate
        done = [p for p in self.complete() if (p / "trainer.pt").is_file()]
        return done[-1] if done else None


def resolve_resume(resume: str | None, manager: CheckpointManager) -> Path | None:
    """``None``/"" -> no resume; "auto" -> the latest checkpoint if any; otherwise a checkpoint folder."""
    if not resume:
        return None
    if resume == "auto":
        return manager.latest()
    path = Path(resume)
    if not (path / "trainer.pt").is_file():
        raise FileNotFoundError(f"resume: {path} is not a checkpoint folder (no trainer.pt)")
    return path
