"""Example clips for the chat tab: a few shapes-world videos (``divot.data.shapes``) written at start-up."""

from __future__ import annotations

from pathlib import Path

# (shape, colour, motion): distinct shapes, colours and motions, so the examples ask different things
EXAMPLE_OBJECTS = (
    ("circle", "red", "moves left"),
    ("square", "blue", "moves up"),
    ("triangle", "green", "grows"),
)


def write_example_clips(folder: str | Path, size: int = 32) -> list[tuple[Path, str]]:
    """Write one 2-second mp4 per ``EXAMPLE_OBJECTS`` entry under ``folder`` (``size`` px, the shapes world's
    own size by default); returns ``(path, caption)`` pairs, e.g. ``(folder/red_circle.mp4, "a red circle
    moves left")``."""
    from divot.data.shapes import ClipSpec, ObjectSpec, render_clip
    from divot.data.writers import write_video

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    clips = []
    for shape, colour, motion in EXAMPLE_OBJECTS:
        spec = ClipSpec((ObjectSpec(shape, colour, motion),))
        frames = render_clip(spec, size=size, rng=None)  # (t, size, size, 3) uint8, centred track
        path = write_video(frames, folder / f"{colour}_{shape}.mp4")
        clips.append((path, spec.caption))
    return clips
