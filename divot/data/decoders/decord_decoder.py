"""decord backend: fast random access (``get_batch`` seeks to keyframes itself) and the file's rotation applied.

Frames are fetched at the native size one at a time, each resized to the output size at once
(``resize_frame``); the reader decodes on one thread: with decord's default thread pool a load's peak memory on
a 90-s 1080p video was about 220 MB higher than with one thread, and no faster on 2 cores
(benchmarks/decode_memory.py). Even so decord's reader holds more than PyAV's (about 80 MB after the first
1080p frames, varying from run to run with its native threads). decord can also scale while decoding
(``VideoReader(width=, height=)``), but its scaled YUV -> RGB path shifts colours by about one level against
the full-size conversion (max 0.075, mean 0.009 on [-1, 1] pixels, 1080p), so it is not used.

decord 0.6 (the wheel on the project's machines) fails on two kinds of valid files, which PyAV decodes:
- GIFs: it cannot open them ("Failed to measure duration" / broken metadata), so they are never sent here;
- some native frame widths (16, 24, 48, 17 ... pixels; 32, 40, 64, 160, 320 work): ``get_batch`` stops with
  "DECORDArrayCopyFromTo: The size must exactly match", a row-alignment bug in its frame copy. Frame 0 is
  decoded on opening, so such files fail there.
Both raise VideoDecodeError here; the automatic backend choice then retries with PyAV.

``av`` is imported before ``decord`` on purpose: decord bundles an older libvpx, and loading it first breaks
PyAV's VP9 encoder (see ``divot.data.writers``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from divot.data.decoders.base import (
    VideoDecodeError,
    VideoFile,
    VideoInfo,
    check_fps,
    decode_size,
    resize_frame,
)

UNSUPPORTED_SUFFIXES = (".gif",)


def _as_numpy(batch) -> np.ndarray:
    """decord batch -> numpy, whatever bridge (native / torch) decord is set to."""
    if hasattr(batch, "asnumpy"):
        return batch.asnumpy()
    return batch.numpy() if hasattr(batch, "numpy") else np.asarray(batch)


class DecordVideo(VideoFile):
    backend = "decord"

    def __init__(self, path: Path, short_side: int | None = None):
        import av  # noqa: F401  (before decord, see the module docstring)
        import decord

        super().__init__(path, None)
        if path.suffix.lower() in UNSUPPORTED_SUFFIXES:
            raise VideoDecodeError(f"decord cannot read {path.suffix} files such as {path}")
        self._reader = decord.VideoReader(str(path), num_threads=1)
        num_frames = len(self._reader)
        if num_frames < 1:
            raise VideoDecodeError(f"video file {path} has no frames")
        first = _as_numpy(self._reader.get_batch([0]))  # (1, h, w, 3) as displayed; trips the width bug early
        height, width = first.shape[1:3]
        fps = check_fps(path, self._reader.get_avg_fps())
        self.info = VideoInfo(path=path, num_frames=num_frames, fps=fps, width=width, height=height)
        self.requested_size = decode_size(height, width, short_side)

    def _read(self, indices: np.ndarray) -> np.ndarray:
        out = np.empty((len(indices), *self.out_size, 3), dtype=np.uint8)
        if self.requested_size is None:  # native size: one batch, as decord is fastest
            return _as_numpy(self._reader.get_batch(indices.tolist()))
        for n, index in enumerate(indices.tolist()):
            out[n] = resize_frame(_as_numpy(self._reader[index]), self.out_size)  # one native frame at a time
        return out

    def close(self) -> None:
        self._reader = None
