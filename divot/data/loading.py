"""Video file -> model-ready clips: open once, sample (the one policy), decode only the sampled frames straight
at the model's size, transform.

Frames are decoded at the smallest size whose short side is >= the model's frame size (aspect kept), so the
transform's resize has nothing left to do but its center crop, and a 1080p or 4K video costs no more memory
than a 256-pixel one. The decoder's scaler (swscale's area filter, or torchcodec's antialiased bilinear) is
not bit-identical to the transform's antialiased bilinear resize: ``decode_at_model_size=False`` decodes at
the native size and leaves the resize to the transform (the reference path; measured differences are in
tests/data/test_decoders.py).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from divot.constants import FRAME_SIZE, MAX_CLIPS
from divot.data.sampling import sample_clip_indices, sparse_indices
from divot.data.transforms import frames_to_tensor
from divot.data.video import VideoFile, VideoInfo, open_video

# Decoded uint8 frames held at once, before they are converted into the output: 48 at model size (256 x 455),
# 2 at 1080p and 1 at 4K when decoding at the native size (``decode_at_model_size=False``).
_BATCH_BYTES = 16 * 2**20


def clip_indices_of(info: VideoInfo, max_clips: int = MAX_CLIPS, rng: np.random.Generator | None = None) -> np.ndarray:
    """Native frame indices of the clips of a probed video: int64 (clips, 16)."""
    return np.stack(sample_clip_indices(info.num_frames, info.fps, max_clips=max_clips, rng=rng))


def clip_indices_for(
    path: str | Path, max_clips: int = MAX_CLIPS, rng: np.random.Generator | None = None
) -> np.ndarray:
    """Native frame indices of the clips of the video at ``path``: int64 (clips, 16)."""
    with open_video(path) as video:
        return clip_indices_of(video.info, max_clips, rng)


def load_video_clips(
    path: str | Path,
    size: int = FRAME_SIZE,
    max_clips: int = MAX_CLIPS,
    rng: np.random.Generator | None = None,
    decode_at_model_size: bool = True,
) -> torch.Tensor:
    """The dense clips of a video: float32 (clips, 16, 3, size, size) in [-1, 1].

    ``rng=None`` is the deterministic evaluation policy; a generator randomises window starts (training).
    Raises FileNotFoundError / VideoDecodeError naming the file when it cannot be read.
    """
    with open_video(path, short_side=size if decode_at_model_size else None) as video:
        return _load(video, clip_indices_of(video.info, max_clips, rng), size)


def load_sparse_clips(
    path: str | Path,
    size: int = FRAME_SIZE,
    max_clips: int = MAX_CLIPS,
    rng: np.random.Generator | None = None,
    decode_at_model_size: bool = True,
) -> torch.Tensor:
    """The tokenizer's input: the 5 sparse frames of each clip, float32 (clips, 5, 3, size, size) in [-1, 1].

    Same clips as ``load_video_clips``; only the sparse frames are decoded.
    """
    with open_video(path, short_side=size if decode_at_model_size else None) as video:
        return _load(video, sparse_indices(clip_indices_of(video.info, max_clips, rng)), size)


def load_clips_with_indices(
    path: str | Path,
    size: int = FRAME_SIZE,
    max_clips: int = MAX_CLIPS,
    rng: np.random.Generator | None = None,
    sparse: bool = True,
    decode_at_model_size: bool = True,
) -> tuple[np.ndarray, torch.Tensor]:
    """For callers that keep the frame numbers too (caches, datasets), with the file opened once: the dense
    indices int64 (clips, 16) and the clips, float32 (clips, 5 if ``sparse`` else 16, 3, size, size)."""
    with open_video(path, short_side=size if decode_at_model_size else None) as video:
        dense = clip_indices_of(video.info, max_clips, rng)
        return dense, _load(video, sparse_indices(dense) if sparse else dense, size)


def load_chosen_clips(
    path: str | Path, choose, size: int = FRAME_SIZE, sparse: bool = False, decode_at_model_size: bool = True
) -> tuple[np.ndarray, torch.Tensor]:
    """The video opened once: ``choose(info)`` gives native dense indices (clips, 16) from its ``VideoInfo`` (it
    may raise ``ValueError``), then those frames (or their sparse 5 if ``sparse``) are decoded: the indices and
    the clips, float32 (clips, 16 or 5, 3, size, size)."""
    with open_video(path, short_side=size if decode_at_model_size else None) as video:
        dense = np.asarray(choose(video.info))
        return dense, _load(video, sparse_indices(dense) if sparse else dense, size)


def load_indexed_clips(
    path: str | Path, indices: np.ndarray, size: int = FRAME_SIZE, decode_at_model_size: bool = True
) -> torch.Tensor:
    """Frames at native ``indices`` (clips, t): each distinct frame decoded once -> (clips, t, 3, size, size)."""
    with open_video(path, short_side=size if decode_at_model_size else None) as video:
        return _load(video, np.asarray(indices), size)


def _load(video: VideoFile, indices: np.ndarray, size: int) -> torch.Tensor:
    """Decode each distinct frame of ``indices`` once, straight into the output (clips, t, 3, size, size).

    Frames are converted as they are decoded into their first place in the output (no second batch of
    float frames); a frame used twice (overlapping clips) is copied there afterwards.
    """
    flat = np.asarray(indices).reshape(-1)
    unique, first, inverse = np.unique(flat, return_index=True, return_inverse=True)  # (u,), (u,), (n,)
    inverse = inverse.reshape(-1)
    h, w = video.out_size
    step = max(1, _BATCH_BYTES // (h * w * 3))  # frames held as uint8 at once (all of them at model size)
    out = torch.empty(len(flat), 3, size, size)  # (n, 3, size, size)
    for start in range(0, len(unique), step):
        decoded = _decode_frames(video, unique[start : start + step])  # (c, h, w, 3) uint8
        places = first[start : start + step]
        if np.array_equal(places, np.arange(places[0], places[0] + len(places))):  # sorted, distinct: in place
            frames_to_tensor(decoded, size, out=out[places[0] : places[0] + len(places)])
        else:
            out[torch.from_numpy(places)] = frames_to_tensor(decoded, size)
    repeats = np.flatnonzero(first[inverse] != np.arange(len(flat)))  # later uses of a frame
    if len(repeats):
        out[torch.from_numpy(repeats)] = out[torch.from_numpy(first[inverse[repeats]])]
    return out.view(*np.shape(indices), 3, size, size)


def _decode_frames(video: VideoFile, unique: np.ndarray) -> np.ndarray:
    """The one decode of a load: sorted distinct ``unique`` frames of an open video -> uint8 (u, h, w, 3)."""
    return video.read(unique)
