"""Stories in the shapes world (DESIGN sections 9 and 10): consecutive clips of one subject.

A story follows one subject object through ``num_segments`` clips; each clip is one sentence. The subject
keeps its position and size from one clip to the next, so each motion is drawn from those that keep it in
the frame. Once in a story a second object may appear (it then stays still, and so does the subject for that
clip). Sentences: "a red circle moves right." "then it moves up." "then a blue square appears."
"then the red circle shrinks." -- the object named first is always the one later sentences refer to.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from divot.constants import DENSE_FRAMES
from divot.data.shapes.world import (
    BACKGROUND,
    MARGIN,
    MOTIONS,
    OBJECT_SIZE,
    SCALE_RANGE,
    TRAVEL,
    ObjectSpec,
    box_overlap,
    motion_track,
    render_tracks,
    sample_objects,
    start_interval,
)

_EPS = 1e-6


@dataclass(frozen=True)
class StorySpec:
    """A planned story: everything needed to render it at any frame size.

    ``subject`` carries the first clip's motion; ``motions[k]`` is the subject's motion in clip k.
    ``newcomer`` (or None) appears at the start of clip ``appear_at`` and stays still. Positions are the
    object centres at the start of the story / at appearance, fractions of the frame side.
    """

    subject: ObjectSpec
    motions: tuple[str, ...]
    start: tuple[float, float, float]  # subject (x, y, scale) at frame 0
    newcomer: ObjectSpec | None = None
    appear_at: int | None = None
    newcomer_position: tuple[float, float] | None = None
    object_size: float = OBJECT_SIZE
    travel: float = TRAVEL
    background: tuple[int, int, int] = BACKGROUND

    @property
    def instruction(self) -> str:
        return f"Generate a story about a {self.subject.noun}."

    def sentences(self) -> list[str]:
        """One sentence per clip."""
        out = [f"a {self.subject.noun} {self.motions[0]}."]
        for k, motion in enumerate(self.motions[1:], start=1):
            if k == self.appear_at:
                out.append(f"then a {self.newcomer.noun} appears.")
            elif self.appear_at is not None and k > self.appear_at:
                out.append(f"then the {self.subject.noun} {motion}.")
            else:
                out.append(f"then it {motion}.")
        return out

    def clip_objects(self, k: int) -> tuple[ObjectSpec, ...]:
        """The objects visible in clip k with their motions there (subject first)."""
        objs = [ObjectSpec(self.subject.shape, self.subject.colour, self.motions[k])]
        if self.newcomer is not None and k >= self.appear_at:
            objs.append(self.newcomer)
        return tuple(objs)


def _segment(motion, state, num_frames, object_size, travel):
    """Track of one clip from ``state`` (x, y, scale): (x, y, half) arrays (t,) and the end state."""
    dx, dy, scale = motion_track(motion, num_frames, travel, SCALE_RANGE, start_scale=state[2])
    x, y, half = state[0] + dx, state[1] + dy, object_size / 2.0 * scale
    return (x, y, half), (float(x[-1]), float(y[-1]), float(scale[-1]))


def _feasible(motion, state, object_size, travel) -> bool:
    scale = state[2]
    ratio = SCALE_RANGE[1] / SCALE_RANGE[0]
    if motion == "grows" and scale * ratio > SCALE_RANGE[1] + _EPS:
        return False
    if motion == "shrinks" and scale / ratio < SCALE_RANGE[0] - _EPS:
        return False
    (x, y, half), _ = _segment(motion, state, 2, object_size, travel)  # tracks are linear: ends suffice
    return bool(np.all(x - half >= MARGIN - _EPS) and np.all(x + half <= 1 - MARGIN + _EPS)
                and np.all(y - half >= MARGIN - _EPS) and np.all(y + half <= 1 - MARGIN + _EPS))


def sample_story(rng: np.random.Generator, split: str = "train", num_segments: int = 3,
                 appear_prob: float = 0.5, object_size: float = OBJECT_SIZE, travel: float = TRAVEL) -> StorySpec:
    """Plan a random story of ``num_segments`` clips; objects come from ``split`` like ``sample_spec``'s.

    The first motion is uniform over MOTIONS (the subject starts small to grow, big to shrink, at scale 1
    otherwise); later ones are uniform over the motions that keep the subject in the frame. With probability
    ``appear_prob`` a second object appears at a random clip after the first.
    """
    if num_segments < 1:
        raise ValueError(f"a story needs at least one segment, got {num_segments}")
    appear_at = None
    if num_segments > 1 and rng.random() < appear_prob:
        appear_at = int(rng.integers(1, num_segments))
    pairs = sample_objects(rng, split, 1 if appear_at is None else 2)

    first = MOTIONS[int(rng.integers(len(MOTIONS)))]
    scale0 = {"grows": SCALE_RANGE[0], "shrinks": SCALE_RANGE[1]}.get(first, 1.0)
    dx, dy, scale = motion_track(first, 2, travel, SCALE_RANGE, start_scale=scale0)
    half = object_size / 2.0 * scale
    (xl, xh), (yl, yh) = start_interval(dx, half), start_interval(dy, half)
    if xl > xh or yl > yh:
        raise ValueError(f"object_size={object_size} and travel={travel} leave no room to {first!r}")
    state = (float(rng.uniform(xl, xh)), float(rng.uniform(yl, yh)), scale0)
    start = state

    motions = [first]
    _, state = _segment(first, state, 2, object_size, travel)
    for k in range(1, num_segments):
        if k == appear_at:
            motion = "stays still"
        else:
            options = [m for m in MOTIONS if _feasible(m, state, object_size, travel)]
            motion = options[int(rng.integers(len(options)))]
        motions.append(motion)
        _, state = _segment(motion, state, 2, object_size, travel)

    subject = ObjectSpec(pairs[0][1], pairs[0][0], first)
    newcomer = newcomer_position = None
    if appear_at is not None:
        newcomer = ObjectSpec(pairs[1][1], pairs[1][0], "stays still")
        newcomer_position = _place_newcomer(rng, subject, tuple(motions), start, appear_at, object_size, travel)
    return StorySpec(subject, tuple(motions), start, newcomer, appear_at, newcomer_position, object_size, travel)


def _subject_track(story: StorySpec, num_frames: int):
    """Subject (x, y, half) arrays over the whole story, (num_segments * num_frames,) each."""
    state, parts = story.start, []
    for motion in story.motions:
        track, state = _segment(motion, state, num_frames, story.object_size, story.travel)
        parts.append(track)
    return tuple(np.concatenate([p[i] for p in parts]) for i in range(3))


def _place_newcomer(rng, subject, motions, start, appear_at, object_size, travel, tries: int = 24):
    """Newcomer centre with the least bounding-box overlap with the subject once it is there."""
    story = StorySpec(subject, motions, start, object_size=object_size, travel=travel)
    x, y, half = (a[appear_at * 2:] for a in _subject_track(story, 2))
    r = object_size / 2.0
    best, best_cost = None, np.inf
    for _ in range(tries):
        cx, cy = rng.uniform(MARGIN + r, 1 - MARGIN - r, size=2)
        cost = box_overlap((x, y, half), (cx, cy, r))
        if cost < best_cost:
            best, best_cost = (float(cx), float(cy)), cost
        if cost == 0.0:
            break
    return best


def render_story(story: StorySpec, size: int = 32, num_frames: int = DENSE_FRAMES, antialias: bool = True) -> np.ndarray:
    """Render a story as one video: uint8 (num_segments * num_frames, size, size, 3); clip k is frames
    ``k * num_frames`` to ``(k + 1) * num_frames``."""
    x, y, half = _subject_track(story, num_frames)
    items = [(story.subject.shape, story.subject.colour, x, y, half, 0)]
    if story.newcomer is not None:
        first = story.appear_at * num_frames
        n = len(x) - first
        nx, ny = story.newcomer_position
        items.append((story.newcomer.shape, story.newcomer.colour, np.full(n, nx), np.full(n, ny),
                      np.full(n, story.object_size / 2.0), first))
    return render_tracks(items, size, len(x), story.background, antialias)
