"""The clip sampler: which native frames of a video make up its 2-second clips (DESIGN section 2).

This module owns the policy; every loader calls ``sample_clip_indices``.

A clip is DENSE_FRAMES (16) frames at DENSE_FPS (8 fps): in native frames, 16 indices ``step = fps / 8``
apart (repeats for videos below 8 fps). With ``n8`` the video's length in 8-fps frames:
- long video (``n8 >= 16 * max_clips``): ``max_clips`` equal segments, one window per segment, at the
  segment start (evaluation) or at a random start inside the segment (training, ``rng`` given);
- otherwise: back-to-back windows from frame 0; when frames remain after the last whole window, one more
  clip spreads its 16 indices evenly over them. Nothing is random here: the windows tile the video.
- shorter than one clip: one clip spreading 16 indices over all frames (repeats allowed).
For training on single clips, ``max_clips=1`` turns any video of at least one clip into one segment with
a random window.
"""

from __future__ import annotations

import math

import numpy as np

from divot.constants import DENSE_FPS, DENSE_FRAMES, MAX_CLIPS, SPARSE_INDICES

# Float slack for products such as 15 * (29.97 / 8) that should land on whole frames.
_EPS = 1e-6


def sample_clip_indices(
    num_frames: int,
    fps: float,
    max_clips: int = MAX_CLIPS,
    rng: np.random.Generator | None = None,
) -> list[np.ndarray]:
    """Native frame indices of each clip of a video.

    Args:
        num_frames: frames in the video (>= 1).
        fps: native frame rate (> 0).
        max_clips: most clips to return (>= 1).
        rng: None for the deterministic evaluation policy; a generator randomises each window's start
            inside its segment (long videos only).

    Returns:
        between 1 and ``max_clips`` int64 arrays of DENSE_FRAMES indices, each within [0, num_frames),
        non-decreasing within and across clips.
    """
    if isinstance(num_frames, bool) or not isinstance(num_frames, (int, np.integer)) or num_frames < 1:
        raise ValueError(f"num_frames must be an integer >= 1, got {num_frames!r}")
    if not (isinstance(fps, (int, float, np.integer, np.floating)) and math.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be a finite number > 0, got {fps!r}")
    if isinstance(max_clips, bool) or not isinstance(max_clips, (int, np.integer)) or max_clips < 1:
        raise ValueError(f"max_clips must be an integer >= 1, got {max_clips!r}")
    num_frames, max_clips = int(num_frames), int(max_clips)
    step = float(fps) / DENSE_FPS  # native frames per 8-fps frame
    n8 = math.floor(num_frames / step + _EPS)  # length in 8-fps frames

    if n8 >= DENSE_FRAMES * max_clips:
        bounds = [k * num_frames // max_clips for k in range(max_clips + 1)]  # integer segment edges
        return [_window(bounds[k], bounds[k + 1], step, rng) for k in range(max_clips)]

    num_whole = n8 // DENSE_FRAMES
    clips = [_window(_start(c, step), num_frames, step, None) for c in range(num_whole)]
    rest_start = _start(num_whole, step)
    if n8 % DENSE_FRAMES or num_whole == 0:
        # The squeezed last window (or the only clip of a video shorter than one clip).
        clips.append(_spread(rest_start, num_frames))
    return clips


def sparse_indices(dense: np.ndarray) -> np.ndarray:
    """Select the sparse frames (SPARSE_INDICES) of dense clip indices: (..., 16) -> (..., 5)."""
    dense = np.asarray(dense)
    if dense.shape[-1:] != (DENSE_FRAMES,):
        raise ValueError(f"expected dense indices with last dim {DENSE_FRAMES}, got shape {dense.shape}")
    return dense[..., list(SPARSE_INDICES)]


def _start(clip: int, step: float) -> int:
    """First native frame of the ``clip``-th back-to-back window."""
    return math.floor(clip * DENSE_FRAMES * step + _EPS)


def _window(start: int, end: int, step: float, rng: np.random.Generator | None) -> np.ndarray:
    """16 indices ``step`` apart inside [start, end); spread evenly when they do not fit."""
    offsets = np.floor(np.arange(DENSE_FRAMES) * step + _EPS).astype(np.int64)  # (16,) from the window start
    room = (end - 1) - (start + int(offsets[-1]))  # spare frames after the window's last index
    if room < 0:
        return _spread(start, end)
    if rng is not None:
        start += int(rng.integers(0, room + 1))
    return start + offsets


def _spread(start: int, end: int) -> np.ndarray:
    """16 indices spread evenly over [start, end) (repeats when fewer than 16 frames)."""
    return np.floor(np.linspace(start, end - 1, DENSE_FRAMES) + 0.5).astype(np.int64)
