"""Shots -> 2-second clips, and shots -> scenes.

- ``shots_from_cuts``: cut frames -> shots ``(first, last + 1)`` covering the video.
- ``merge_short_shots``: a shot shorter than one clip (2 s) joins the previous shot (an episode's first shot
  joins the next one), so every shot but a lone short video holds at least one clip.
- ``clip_windows``: a shot is cut into 2-second clips by the one clip sampler (``sample_clip_indices`` with as
  many clips as whole 2-second windows fit, evaluation policy): equal segments, each a clip window. A window
  written as [start, end) seconds gives back the same 16 frames through the story reader
  (``segment_clip_indices``), so the clip a caption describes is the clip a story trains on.
- ``stitch_scenes``: adjacent shots whose mean tokens have a cosine >= a threshold share a scene.
"""

from __future__ import annotations

import math

import numpy as np

from divot.constants import DENSE_FPS, DENSE_FRAMES
from divot.data.sampling import sample_clip_indices


def clip_frames(fps: float) -> int:
    """Native frames of one 2-second clip (16 frames at 8 fps) at ``fps``."""
    return max(1, math.ceil(DENSE_FRAMES * fps / DENSE_FPS - 1e-6))


def shots_from_cuts(cuts: list[int], num_frames: int) -> list[tuple[int, int]]:
    """Shots ``(first, last + 1)`` of a video of ``num_frames`` split at ``cuts`` (cuts outside (0, num_frames)
    and repeats are ignored)."""
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    edges = [0, *sorted({int(c) for c in cuts if 0 < int(c) < num_frames}), num_frames]
    return list(zip(edges[:-1], edges[1:], strict=True))


def merge_short_shots(shots: list[tuple[int, int]], min_frames: int) -> list[tuple[int, int]]:
    """Shots of fewer than ``min_frames`` merged into the previous shot (the first shot into the next one)."""
    merged: list[tuple[int, int]] = []
    for start, end in shots:
        if merged and end - start < min_frames:
            merged[-1] = (merged[-1][0], end)
        elif len(merged) == 1 and merged[0][1] - merged[0][0] < min_frames:  # a short first shot joins this one
            merged[0] = (merged[0][0], end)
        else:
            merged.append((start, end))
    return merged


def clip_windows(start: int, end: int, fps: float) -> list[tuple[int, int]]:
    """The clip windows ``(first, last + 1)`` of the shot [start, end): as many 2-second clips as fit whole (at
    least one), placed by the clip sampler; the windows tile the shot."""
    num_frames = end - start
    if num_frames < 1:
        raise ValueError(f"a shot needs at least one frame, got [{start}, {end})")
    step = fps / DENSE_FPS  # native frames per 8-fps frame
    num_clips = max(1, math.floor(math.floor(num_frames / step + 1e-6) / DENSE_FRAMES))
    firsts = [int(idx[0]) for idx in sample_clip_indices(num_frames, fps, max_clips=num_clips)]
    return [(start + a, start + b) for a, b in zip(firsts, [*firsts[1:], num_frames], strict=True)]


def window_clip_indices(first: int, last: int, fps: float) -> np.ndarray:
    """Native indices (16,) of the one clip of the window [first, last): what the story reader decodes for a
    segment with these bounds (``divot.data.stories.segment_clip_indices``)."""
    return first + sample_clip_indices(last - first, fps, max_clips=1)[0]


def shot_similarities(shot_tokens: list[np.ndarray]) -> list[float]:
    """Cosine of the mean tokens of each shot and the next: ``shot_tokens[i]`` (clips, q, d) -> (len - 1,)."""
    means = [np.asarray(t, dtype=np.float64).mean(axis=0).reshape(-1) for t in shot_tokens]  # (q * d,) each
    sims = []
    for a, b in zip(means[:-1], means[1:], strict=True):
        norm = float(np.linalg.norm(a) * np.linalg.norm(b))
        sims.append(float(a @ b / norm) if norm > 0 else 0.0)
    return sims


def stitch_scenes(similarities: list[float], threshold: float | None) -> list[int]:
    """Scene id of each shot: a new scene starts where the similarity to the previous shot is below
    ``threshold``; ``threshold=None`` (stitching off): every shot is its own scene."""
    scenes = [0]
    for sim in similarities:
        same = threshold is not None and sim >= threshold
        scenes.append(scenes[-1] if same else scenes[-1] + 1)
    return scenes
