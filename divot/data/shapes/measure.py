"""Pixel measurements for checking shapes-world video without a human (DESIGN section 9).

Everything is relative to the clip itself: the background colour is estimated per clip, the object mask
thresholds the distance from it at half the clip's peak contrast, colours are compared by hue, shapes by
overlap with templates fitted to the object's bounding box. This keeps the measurements stable under mp4
compression and on blurry or noisy model outputs.

Frames: uint8 (t, h, w, 3) or float (t, 3, h, w) in [-1, 1].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from divot.data.shapes.world import COLOUR_HUES, COLOURS, SHAPES, shape_inside
from divot.data.writers import to_uint8_frames

MIN_CONTRAST = 0.2  # least distance from the background (fraction of 255) a pixel needs to count as object
MOVE_THRESHOLD = 0.15  # centroid displacement over the clip (fraction of the side) that counts as a move
SCALE_THRESHOLD = 0.5  # |log area ratio| over the clip that counts as growing / shrinking
MIN_SATURATION = 0.25  # pixels greyer than this (HSV saturation) carry no hue vote


@dataclass
class ClipMeasurement:
    """What the pixels of one clip show.

    ``area`` (t,) object pixels per frame; ``centroid`` (t, 2) object centre (x, y) in pixels (NaN where the
    frame has no object); ``colour`` / ``shape`` / ``motion`` are vocabulary words, or None when the clip
    shows no object (or too little of it to tell).
    """

    colour: str | None
    area: np.ndarray
    centroid: np.ndarray
    motion: str | None
    shape: str | None
    size: int


def _hsv(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hue in degrees, saturation, value of (n, 3) RGB pixels in 0..255."""
    rgb = pixels.astype(np.float32) / 255.0
    mx, mn = rgb.max(axis=-1), rgb.min(axis=-1)
    chroma = mx - mn
    safe = np.where(chroma > 0, chroma, 1.0)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    hue = np.where(mx == r, ((g - b) / safe) % 6.0, np.where(mx == g, (b - r) / safe + 2.0, (r - g) / safe + 4.0))
    hue = np.where(chroma > 0, hue * 60.0, 0.0)
    sat = np.where(mx > 0, chroma / np.where(mx > 0, mx, 1.0), 0.0)
    return hue, sat, mx


def _nearest_colour_index(hue: np.ndarray) -> np.ndarray:
    """Index into COLOURS of the nearest hue (circular distance)."""
    ref = np.array([COLOUR_HUES[c] for c in COLOURS], dtype=np.float32)
    d = np.abs(hue[..., None] - ref)
    return np.argmin(np.minimum(d, 360.0 - d), axis=-1)


def background_colour(frames) -> np.ndarray:
    """Per-channel median over every pixel of the clip, (3,) float in 0..255 (objects cover well under half
    of the frame, so the median is background)."""
    arr = to_uint8_frames(frames)
    return np.median(arr.reshape(-1, 3), axis=0).astype(np.float32)


def object_mask(frames, min_contrast: float = MIN_CONTRAST, colour: str | None = None) -> np.ndarray:
    """Object pixels, bool (t, h, w).

    A pixel is object when its largest channel difference from the clip's background exceeds half the clip's
    peak difference (99.5th percentile) and at least ``min_contrast`` * 255; specks smaller than a tenth of
    the frame's largest blob (or 0.2% of the frame) are dropped. With ``colour``, only pixels whose hue is
    nearest that colour are kept (to pick one object of a two-object clip).
    """
    arr = to_uint8_frames(frames)
    t, h, w, _ = arr.shape
    dist = np.abs(arr.astype(np.float32) - background_colour(arr)).max(axis=-1)  # (t, h, w)
    peak = float(np.percentile(dist, 99.5))
    mask = dist > max(min_contrast * 255.0, 0.5 * peak)
    if colour is not None:
        if colour not in COLOURS:
            raise ValueError(f"unknown colour {colour!r}; expected one of {COLOURS}")
        hue, sat, _ = _hsv(arr)
        mask &= (_nearest_colour_index(hue) == COLOURS.index(colour)) & (sat >= MIN_SATURATION)
    # Drop specks: connected blobs within each frame (no connection across frames).
    labels, n = ndimage.label(mask, structure=np.array([[[0] * 3] * 3, [[1] * 3] * 3, [[0] * 3] * 3]))
    if n == 0:
        return mask
    sizes = np.bincount(labels.ravel())[1:]  # (n,)
    frame_of = np.array([s[0].start for s in ndimage.find_objects(labels)])  # (n,)
    largest = np.zeros(t)
    np.maximum.at(largest, frame_of, sizes)
    keep = (sizes >= 0.1 * largest[frame_of]) & (sizes >= max(2.0, 0.002 * h * w))
    return np.concatenate([[False], keep])[labels]


def dominant_colour(frames, mask: np.ndarray | None = None) -> str | None:
    """The COLOURS entry nearest in hue to most of the object's pixels (votes weighted by chroma), or None
    when no object pixel has a hue."""
    arr = to_uint8_frames(frames)
    mask = object_mask(arr) if mask is None else mask
    pixels = arr[mask]  # (n, 3)
    if len(pixels) == 0:
        return None
    hue, sat, val = _hsv(pixels)
    weight = np.where(sat >= MIN_SATURATION, sat * val, 0.0)
    if weight.sum() <= 0:
        return None
    votes = np.bincount(_nearest_colour_index(hue), weights=weight, minlength=len(COLOURS))
    return COLOURS[int(np.argmax(votes))]


def _template_scores(crop: np.ndarray) -> np.ndarray:
    """Soft IoU of a cropped bool mask (bh, bw) with each SHAPES template filling the crop, (len(SHAPES),)."""
    bh, bw = crop.shape
    ss = 4
    v = ((np.arange(bh * ss) + 0.5) / ss / bh * 2.0 - 1.0)[:, None]
    u = ((np.arange(bw * ss) + 0.5) / ss / bw * 2.0 - 1.0)[None, :]
    m = crop.astype(np.float32)
    scores = []
    for shape in SHAPES:
        cov = shape_inside(shape, u, v).reshape(bh, ss, bw, ss).mean(axis=(1, 3))
        scores.append(np.minimum(m, cov).sum() / max(np.maximum(m, cov).sum(), 1e-6))
    return np.array(scores)


def shape_label(frames, mask: np.ndarray | None = None, min_side: int = 5) -> str | None:
    """The SHAPES entry whose template best overlaps the object, or None if the object is never seen with
    both sides of at least ``min_side`` px.

    Scores each frame whose object area is at least 70% of the clip's largest (the object reads best when
    big), using the largest blob's bounding box, and sums the scores.
    """
    mask = object_mask(frames) if mask is None else mask
    area = mask.reshape(len(mask), -1).sum(axis=1)
    if area.max() == 0:
        return None
    total = np.zeros(len(SHAPES))
    used = 0
    for i in np.flatnonzero(area >= 0.7 * area.max()):
        labels, n = ndimage.label(mask[i])
        if n == 0:
            continue
        biggest = 1 + int(np.argmax(np.bincount(labels.ravel())[1:]))
        sl = ndimage.find_objects(labels)[biggest - 1]
        crop = labels[sl] == biggest
        if min(crop.shape) < min_side:
            continue
        total += _template_scores(crop)
        used += 1
    return SHAPES[int(np.argmax(total))] if used else None


def classify_motion(centroid: np.ndarray, area: np.ndarray, size: int, move_threshold: float = MOVE_THRESHOLD,
                    scale_threshold: float = SCALE_THRESHOLD) -> str | None:
    """Map a centroid track (t, 2) in pixels and areas (t,) to a MOTIONS label.

    Least-squares lines through the centroid's x and y and through log(area) over the frames that show the
    object give the change over the clip. A move is a displacement above ``move_threshold`` * ``size``;
    growing / shrinking is a |log area ratio| above ``scale_threshold``; when both pass, the larger relative
    to its threshold wins. None when fewer than a quarter of the frames (or fewer than 2) show the object.
    """
    centroid, area = np.asarray(centroid, dtype=np.float64), np.asarray(area, dtype=np.float64)
    t = len(area)
    seen = (area > 0) & np.all(np.isfinite(centroid), axis=1)
    if seen.sum() < max(2, t / 4):
        return None
    frames = np.flatnonzero(seen).astype(np.float64)
    span = t - 1
    dx = np.polyfit(frames, centroid[seen, 0], 1)[0] * span
    dy = np.polyfit(frames, centroid[seen, 1], 1)[0] * span
    dlog = np.polyfit(frames, np.log(area[seen]), 1)[0] * span
    move = np.hypot(dx, dy) / (move_threshold * size)
    grow = abs(dlog) / scale_threshold
    if max(move, grow) < 1.0:
        return "stays still"
    if grow > move:
        return "grows" if dlog > 0 else "shrinks"
    if abs(dx) >= abs(dy):
        return "moves right" if dx > 0 else "moves left"
    return "moves down" if dy > 0 else "moves up"


def measure_clip(frames, colour: str | None = None, min_contrast: float = MIN_CONTRAST) -> ClipMeasurement:
    """Measure the object of a clip (all object pixels together; pass ``colour`` to follow one object of a
    two-object clip): its colour, area and centroid per frame, motion and shape."""
    arr = to_uint8_frames(frames)
    mask = object_mask(arr, min_contrast, colour)  # (t, h, w)
    t, h, w = mask.shape
    area = mask.reshape(t, -1).sum(axis=1).astype(np.float64)
    ys, xs = np.arange(h) + 0.5, np.arange(w) + 0.5
    with np.errstate(invalid="ignore", divide="ignore"):
        cx = (mask.sum(axis=1) * xs).sum(axis=1) / area
        cy = (mask.sum(axis=2) * ys).sum(axis=1) / area
    centroid = np.stack([cx, cy], axis=1)  # (t, 2), NaN where area == 0
    return ClipMeasurement(
        colour=dominant_colour(arr, mask),
        area=area,
        centroid=centroid,
        motion=classify_motion(centroid, area, max(h, w)),
        shape=shape_label(arr, mask),
        size=max(h, w),
    )


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two bool masks of one shape (e.g. (t, h, w) object masks of a generated and
    a real clip); 1.0 when both are empty."""
    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"masks must have the same shape, got {a.shape} and {b.shape}")
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)
