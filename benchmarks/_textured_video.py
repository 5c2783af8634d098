"""Test videos for the decoding benchmarks: an H.264 file whose frames are a random block texture drifting
diagonally (cheap to draw, not trivial to compress, as camera footage is not) with a foreground painted on top."""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import numpy as np


def write_textured_video(path: Path, height: int, width: int, fps: int, seconds: int,
                         paint: Callable[[np.ndarray, int], None]) -> Path:
    """Write ``seconds`` x ``fps`` frames of height x width (libx264 ``veryfast``, crf 23, yuv420p) to ``path``,
    through a partial file renamed at the end; ``paint(frame, t)`` draws frame t's foreground in place on the
    uint8 (height, width, 3) texture. Frames are encoded as they are drawn (none kept)."""
    import av

    rng = np.random.default_rng(0)
    tile = rng.integers(40, 216, (height // 8 + 64, width // 8 + 64, 3), dtype=np.uint8)
    texture = np.repeat(np.repeat(tile, 8, 0), 8, 1)  # 8 x 8 blocks: (H + 512, W + 512, 3)
    partial = path.with_suffix(".partial.mp4")
    with av.open(str(partial), mode="w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "veryfast", "crf": "23"}
        for t in range(fps * seconds):
            shift = (2 * t) % 512
            frame = texture[shift : shift + height, shift : shift + width].copy()  # (H, W, 3)
            paint(frame, t)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    partial.rename(path)
    return path
