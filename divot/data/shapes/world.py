"""The shapes world (DESIGN section 9): vocabularies, clip specs, sampling and rendering.

A clip is a square video on a plain dark background with one object (optionally two); each object has a
shape, a colour and a motion. Geometry is kept in fractions of the frame side so one spec renders at any
size: an object's half-size is ``object_size / 2 * scale`` where ``scale`` is 1 for translating / still
objects and runs between ``SCALE_RANGE`` for growing / shrinking ones.

Reproducing a clip: ``rng = np.random.default_rng(seed); spec = sample_spec(rng, ...);
frames = render_clip(spec, rng=rng, ...)`` (the rng also places the objects).
"""

from __future__ import annotations

import colorsys
import re
from dataclasses import dataclass

import numpy as np

from divot.constants import DENSE_FRAMES

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "diamond", "cross")
# Six saturated colours 60 degrees apart in hue; every one has a channel at 255, so all stand out equally
# from a black background.
COLOUR_RGB: dict[str, tuple[int, int, int]] = {
    "red": (255, 0, 0),
    "yellow": (255, 255, 0),
    "green": (0, 255, 0),
    "cyan": (0, 255, 255),
    "blue": (0, 0, 255),
    "magenta": (255, 0, 255),
}
COLOURS: tuple[str, ...] = tuple(COLOUR_RGB)
# Hue in degrees of each colour, used by the measurements.
COLOUR_HUES: dict[str, float] = {
    name: 360.0 * colorsys.rgb_to_hsv(*(c / 255 for c in rgb))[0] for name, rgb in COLOUR_RGB.items()
}
MOTIONS: tuple[str, ...] = (
    "moves left", "moves right", "moves up", "moves down", "stays still", "grows", "shrinks",
)
# Single-word answers (MSVD-QA style) for each motion.
MOTION_WORDS: dict[str, str] = {
    "moves left": "left", "moves right": "right", "moves up": "up", "moves down": "down",
    "stays still": "still", "grows": "grows", "shrinks": "shrinks",
}
# Unit direction (dx, dy) of translating motions, image coordinates (y grows downwards).
MOTION_DIRECTIONS: dict[str, tuple[int, int]] = {
    "moves left": (-1, 0), "moves right": (1, 0), "moves up": (0, -1), "moves down": (0, 1),
}
# (colour, shape) pairs never produced in the training split: one per shape, each colour at most once, so
# every colour and every shape is still seen in training. Cyan has no held-out pair.
HELD_OUT_COMBOS: frozenset[tuple[str, str]] = frozenset({
    ("blue", "triangle"),
    ("red", "square"),
    ("green", "diamond"),
    ("yellow", "circle"),
    ("magenta", "cross"),
})
SPLITS: tuple[str, ...] = ("train", "held_out")
BACKGROUND: tuple[int, int, int] = (0, 0, 0)

OBJECT_SIZE = 0.4  # object side (bounding box) as a fraction of the frame side at scale 1
TRAVEL = 0.4  # distance a translating object covers over one clip, fraction of the frame side
SCALE_RANGE = (0.6, 1.3)  # growing objects go from the first to the second scale, shrinking ones back
MARGIN = 0.03  # gap kept between the object and the frame border, fraction of the side
CROSS_ARM = 0.34  # half-width of the cross's arms relative to its half-size


@dataclass(frozen=True)
class ObjectSpec:
    """One object of a clip: a shape from SHAPES, a colour from COLOURS, a motion from MOTIONS."""

    shape: str
    colour: str
    motion: str = "stays still"

    def __post_init__(self) -> None:
        for value, vocab, what in ((self.shape, SHAPES, "shape"), (self.colour, COLOURS, "colour"),
                                   (self.motion, MOTIONS, "motion")):
            if value not in vocab:
                raise ValueError(f"unknown {what} {value!r}; expected one of {vocab}")

    @property
    def noun(self) -> str:
        """e.g. ``"red circle"``."""
        return f"{self.colour} {self.shape}"

    @property
    def caption(self) -> str:
        """e.g. ``"a red circle moves left"``."""
        return f"a {self.noun} {self.motion}"

    def attributes(self) -> dict[str, str]:
        return {"shape": self.shape, "colour": self.colour, "motion": self.motion}


@dataclass(frozen=True)
class ClipSpec:
    """A clip: one or two objects on a plain background (RGB 0-255)."""

    objects: tuple[ObjectSpec, ...]
    background: tuple[int, int, int] = BACKGROUND

    def __post_init__(self) -> None:
        if not self.objects:
            raise ValueError("a ClipSpec needs at least one object")
        if len(self.background) != 3 or not all(0 <= int(c) <= 255 for c in self.background):
            raise ValueError(f"background must be an RGB triple in 0..255, got {self.background!r}")

    @property
    def caption(self) -> str:
        """e.g. ``"a red circle moves left and a blue square stays still"``."""
        return " and ".join(o.caption for o in self.objects)


def split_combos(split: str) -> list[tuple[str, str]]:
    """The (colour, shape) pairs a split draws from, in a fixed order."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    combos = [(c, s) for c in COLOURS for s in SHAPES]
    if split == "held_out":
        return [cs for cs in combos if cs in HELD_OUT_COMBOS]
    return [cs for cs in combos if cs not in HELD_OUT_COMBOS]


def sample_objects(rng: np.random.Generator, split: str, count: int) -> list[tuple[str, str]]:
    """``count`` (colour, shape) pairs of ``split`` with pairwise different colours and shapes."""
    combos = split_combos(split)
    chosen: list[tuple[str, str]] = []
    for _ in range(count):
        free = [cs for cs in combos if all(cs[0] != c and cs[1] != s for c, s in chosen)]
        if not free:
            raise ValueError(f"cannot draw {count} objects with distinct colours and shapes from split {split!r}")
        chosen.append(free[int(rng.integers(len(free)))])
    return chosen


def sample_spec(rng: np.random.Generator, split: str = "train", two_objects_prob: float = 0.0) -> ClipSpec:
    """A random clip spec. Every object of a ``held_out`` spec is a HELD_OUT_COMBOS pair; no object of a
    ``train`` spec is. Two objects (with different colours and shapes) with probability ``two_objects_prob``."""
    if not 0.0 <= two_objects_prob <= 1.0:
        raise ValueError(f"two_objects_prob must be in [0, 1], got {two_objects_prob}")
    count = 2 if rng.random() < two_objects_prob else 1
    pairs = sample_objects(rng, split, count)
    return ClipSpec(tuple(ObjectSpec(s, c, MOTIONS[int(rng.integers(len(MOTIONS)))]) for c, s in pairs))


def shape_inside(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Whether normalised points (u, v) lie inside ``shape``; the shape fills the box [-1, 1]^2, v points
    down (the triangle's apex is at the top). Broadcasts u and v."""
    if shape == "circle":
        return u * u + v * v <= 1.0
    if shape == "square":
        return (np.abs(u) <= 1.0) & (np.abs(v) <= 1.0)
    if shape == "triangle":
        return (v >= -1.0) & (v <= 1.0) & (np.abs(u) <= (v + 1.0) / 2.0)
    if shape == "diamond":
        return np.abs(u) + np.abs(v) <= 1.0
    if shape == "cross":
        au, av = np.abs(u), np.abs(v)
        return (au <= 1.0) & (av <= 1.0) & ((au <= CROSS_ARM) | (av <= CROSS_ARM))
    raise ValueError(f"unknown shape {shape!r}; expected one of {SHAPES}")


def motion_track(motion: str, num_frames: int, travel: float = TRAVEL,
                 scale_range: tuple[float, float] = SCALE_RANGE, start_scale: float | None = None):
    """Offsets from the start position and scales over a clip.

    Returns ``(dx, dy, scale)``, each (t,): dx/dy in fractions of the frame side, scale relative to the
    object size. Growing runs the scale from ``start_scale`` (default ``scale_range[0]``) up by the ratio of
    ``scale_range``; shrinking runs it down by the same ratio (default start ``scale_range[1]``).
    """
    if motion not in MOTIONS:
        raise ValueError(f"unknown motion {motion!r}; expected one of {MOTIONS}")
    if num_frames < 2:
        raise ValueError(f"a clip needs at least 2 frames, got {num_frames}")
    t = np.linspace(0.0, 1.0, num_frames)
    ux, uy = MOTION_DIRECTIONS.get(motion, (0, 0))
    dx, dy = ux * travel * t, uy * travel * t
    ratio = scale_range[1] / scale_range[0]
    if motion == "grows":
        s0 = scale_range[0] if start_scale is None else start_scale
        scale = s0 * (1.0 + (ratio - 1.0) * t)
    elif motion == "shrinks":
        s0 = scale_range[1] if start_scale is None else start_scale
        scale = s0 * (1.0 + (1.0 / ratio - 1.0) * t)
    else:
        scale = np.full(num_frames, 1.0 if start_scale is None else start_scale)
    return dx, dy, scale


def start_interval(offsets: np.ndarray, half: np.ndarray, margin: float = MARGIN) -> tuple[float, float]:
    """Range of start coordinates (fractions of the side) that keep an object whose centre moves by
    ``offsets`` (t,) with half-sizes ``half`` (t,) inside the frame; empty when low > high."""
    return float(np.max(margin + half - offsets)), float(np.min(1.0 - margin - half - offsets))


def draw_object(canvas: np.ndarray, shape: str, rgb, cx: np.ndarray, cy: np.ndarray, half: np.ndarray,
                antialias: bool = True) -> None:
    """Composite one object onto ``canvas`` (t, h, w, 3) float32 in 0..255, in place.

    ``cx``, ``cy``, ``half`` (t,) are the centre and half-size in pixels (pixel i covers [i, i + 1)).
    Antialiasing averages a 4 x 4 supersampling grid per pixel.
    """
    t, h, w, _ = canvas.shape
    ss = 4 if antialias else 1
    ys = (np.arange(h * ss, dtype=np.float32) + 0.5) / ss
    xs = (np.arange(w * ss, dtype=np.float32) + 0.5) / ss
    half = np.maximum(np.asarray(half, dtype=np.float32), 1e-3)
    u = (xs[None, None, :] - np.asarray(cx, np.float32)[:, None, None]) / half[:, None, None]  # (t, 1, w*ss)
    v = (ys[None, :, None] - np.asarray(cy, np.float32)[:, None, None]) / half[:, None, None]  # (t, h*ss, 1)
    inside = shape_inside(shape, u, v)  # (t, h*ss, w*ss)
    alpha = inside.reshape(t, h, ss, w, ss).mean(axis=(2, 4), dtype=np.float32)[..., None]  # (t, h, w, 1)
    colour = np.asarray(rgb, dtype=np.float32)
    canvas *= 1.0 - alpha
    canvas += alpha * colour


def box_overlap(a, b, gap: float = 0.05) -> float:
    """Largest per-frame intersection area of two objects' bounding boxes grown by ``gap`` (so objects that
    merely touch count as overlapping); each object is (cx, cy, half) arrays, fractions of the side."""
    ha, hb = a[2] + gap / 2, b[2] + gap / 2
    ix = np.minimum(a[0] + ha, b[0] + hb) - np.maximum(a[0] - ha, b[0] - hb)
    iy = np.minimum(a[1] + ha, b[1] + hb) - np.maximum(a[1] - ha, b[1] - hb)
    return float(np.max(np.clip(ix, 0, None) * np.clip(iy, 0, None)))


def place_objects(spec: ClipSpec, num_frames: int, rng: np.random.Generator | None = None,
                  object_size: float = OBJECT_SIZE, travel: float = TRAVEL, tries: int = 24):
    """Tracks ``(cx, cy, half)`` per object, each (t,) in fractions of the side, inside the frame.

    Start positions are uniform over the allowed range (the middle of it when ``rng`` is None). With two
    objects the placement with the least bounding-box overlap over ``tries`` draws is kept.
    """
    if not 0.0 < object_size < 1.0:
        raise ValueError(f"object_size must be in (0, 1), got {object_size}")
    shapes = []
    for obj in spec.objects:
        dx, dy, scale = motion_track(obj.motion, num_frames, travel)
        half = object_size / 2.0 * scale
        (xl, xh), (yl, yh) = start_interval(dx, half), start_interval(dy, half)
        if xl > xh or yl > yh:
            raise ValueError(f"a {obj.noun} that {obj.motion} does not fit in the frame with object_size="
                             f"{object_size} and travel={travel}; make them smaller")
        shapes.append((dx, dy, half, (xl, xh), (yl, yh)))

    def draw_once(gen):
        tracks = []
        for dx, dy, half, (xl, xh), (yl, yh) in shapes:
            x0 = (xl + xh) / 2 if gen is None else gen.uniform(xl, xh)
            y0 = (yl + yh) / 2 if gen is None else gen.uniform(yl, yh)
            tracks.append((x0 + dx, y0 + dy, half))
        return tracks

    best = draw_once(rng)
    if len(best) > 1 and rng is not None:
        best_cost = sum(box_overlap(a, b) for i, a in enumerate(best) for b in best[i + 1:])
        for _ in range(tries - 1):
            if best_cost == 0.0:
                break
            cand = draw_once(rng)
            cost = sum(box_overlap(a, b) for i, a in enumerate(cand) for b in cand[i + 1:])
            if cost < best_cost:
                best, best_cost = cand, cost
    return best


def render_tracks(items, size: int, num_frames: int, background=BACKGROUND, antialias: bool = True) -> np.ndarray:
    """Render objects following given tracks.

    ``items``: sequence of ``(shape, colour, cx, cy, half, first_frame)``, cx/cy/half arrays of length
    ``num_frames - first_frame`` in fractions of the side; an object is drawn from ``first_frame`` on.
    Returns uint8 (t, size, size, 3).
    """
    canvas = np.empty((num_frames, size, size, 3), dtype=np.float32)
    canvas[:] = np.asarray(background, dtype=np.float32)
    for shape, colour, cx, cy, half, first in items:
        draw_object(canvas[first:], shape, COLOUR_RGB[colour], np.asarray(cx) * size, np.asarray(cy) * size,
                    np.asarray(half) * size, antialias)
    return np.clip(canvas + 0.5, 0, 255).astype(np.uint8)


def render_clip(spec: ClipSpec, size: int = 32, num_frames: int = DENSE_FRAMES,
                rng: np.random.Generator | None = None, object_size: float = OBJECT_SIZE,
                travel: float = TRAVEL, antialias: bool = True) -> np.ndarray:
    """Render ``spec`` as uint8 frames (t, size, size, 3).

    The object's box is ``object_size`` of the side (growing / shrinking objects span SCALE_RANGE of that);
    translating objects move ``travel`` of the side over the clip. ``rng`` places the objects (None: centred
    in their allowed range). Later objects are drawn over earlier ones.
    """
    if size < 8:
        raise ValueError(f"frames must be at least 8 px, got size={size}")
    tracks = place_objects(spec, num_frames, rng, object_size, travel)
    items = [(o.shape, o.colour, cx, cy, half, 0) for o, (cx, cy, half) in zip(spec.objects, tracks, strict=True)]
    return render_tracks(items, size, num_frames, spec.background, antialias)


def parse_caption(text: str) -> dict[str, str | None]:
    """The first colour, shape and motion of the shapes world's vocabulary named in ``text`` (None if absent).

    Motions are phrases ("moves left"), so the earliest phrase found wins."""
    text = text.lower()
    words = re.findall(r"[a-z]+", text)
    hits = [(text.find(m), m) for m in MOTIONS if m in text]
    return {"colour": next((w for w in words if w in COLOURS), None),
            "shape": next((w for w in words if w in SHAPES), None),
            "motion": min(hits)[1] if hits else None}
