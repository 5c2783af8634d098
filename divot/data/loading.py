"""Video file -> model-ready clips: probe, sample (the one policy), decode once, transform."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from divot.constants import FRAME_SIZE, MAX_CLIPS
from divot.data.sampling import sample_clip_indices, sparse_indices
from divot.data.transforms import frames_to_tensor
from divot.data.video import probe_video, read_frames


def clip_indices_for(
    path: str | Path, max_clips: int = MAX_CLIPS, rng: np.random.Generator | None = None
) -> np.ndarray:
    """Native frame indices of the clips of the video at ``path``: int64 (clips, 16)."""
    info = probe_video(path)
    return np.stack(sample_clip_indices(info.num_frames, info.fps, max_clips=max_clips, rng=rng))


def load_video_clips(
    path: str | Path,
    size: int = FRAME_SIZE,
    max_clips: int = MAX_CLIPS,
    rng: np.random.Generator | None = None,
) -> torch.Tensor:
    """The dense clips of a video: float32 (clips, 16, 3, size, size) in [-1, 1].

    ``rng=None`` is the deterministic evaluation policy; a generator randomises window starts (training).
    Raises FileNotFoundError / VideoDecodeError naming the file when it cannot be read.
    """
    return load_indexed_clips(path, clip_indices_for(path, max_clips, rng), size)


def load_sparse_clips(
    path: str | Path,
    size: int = FRAME_SIZE,
    max_clips: int = MAX_CLIPS,
    rng: np.random.Generator | None = None,
) -> torch.Tensor:
    """The tokenizer's input: the 5 sparse frames of each clip, float32 (clips, 5, 3, size, size) in [-1, 1].

    Same clips as ``load_video_clips``; only the sparse frames are decoded.
    """
    return load_indexed_clips(path, sparse_indices(clip_indices_for(path, max_clips, rng)), size)


def load_indexed_clips(path: str | Path, indices: np.ndarray, size: int = FRAME_SIZE) -> torch.Tensor:
    """Frames at native ``indices`` (clips, t): each distinct frame decoded once -> (clips, t, 3, size, size)."""
    unique, inverse = np.unique(indices, return_inverse=True)  # (u,), (clips * t,)
    frames = frames_to_tensor(read_frames(path, unique), size)  # (u, 3, size, size)
    return frames[torch.from_numpy(inverse.reshape(indices.shape))]  # (clips, t, 3, size, size)
