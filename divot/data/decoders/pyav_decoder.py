"""PyAV (FFmpeg) backend: the one that reads everything (GIF, odd sizes, any container); the fallback.

Opening demuxes the stream once without decoding (packet timestamps and keyframes: the exact frame count and
a frame number -> timestamp map), then decodes frame 0 (proof that the file decodes, its size and rotation).
Reading seeks to the keyframe before a wanted frame when one lies between the decoder's position and that
frame, and decodes forward; each wanted frame is converted to RGB and resized to the output size at once
(``resize_frame``), so at most one frame at full resolution exists at a time. Streams without timestamps (rare) are decoded from the start,
counting frames.
"""

from __future__ import annotations

import bisect
import logging
from pathlib import Path

import numpy as np

from divot.data.decoders.base import (
    VideoDecodeError,
    VideoFile,
    VideoInfo,
    check_fps,
    decode_size,
    resize_frame,
    rotate,
    rotation_turns,
)

logger = logging.getLogger(__name__)

class PyAVVideo(VideoFile):
    backend = "pyav"

    def __init__(self, path: Path, short_side: int | None = None):
        import av  # noqa: F401  (lazy: ``import divot`` stays light)

        super().__init__(path, None)
        self._container = av.open(str(path))
        try:
            self._open(path, short_side)
        except BaseException:
            self.close()
            raise

    def _open(self, path: Path, short_side: int | None) -> None:
        import av

        container = self._container
        if not container.streams.video:
            raise VideoDecodeError(f"video file {path} has no video stream (no decodable frames)")
        stream = self._stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        pts, keys = [], []
        for packet in container.demux(stream):
            if packet.size:  # the flush packet at the end has no data
                pts.append(packet.pts)
                if packet.is_keyframe:
                    keys.append(packet.pts)
        if not pts:
            raise VideoDecodeError(f"video file {path} has no decodable frames (no video packets)")
        self._seekable = None not in pts and len(set(pts)) == len(pts)
        self._pts = sorted(pts) if self._seekable else []  # frame number -> pts (presentation order)
        self._keys = sorted(k for k in keys if k is not None)
        self._frames = None  # the running decode generator
        self._position = -1  # frame number of the last frame the generator gave
        self._turns = 0
        first = self._decode_first(path)
        self._turns = rotation_turns(getattr(first, "rotation", 0))
        height, width = (first.width, first.height) if self._turns % 2 else (first.height, first.width)
        num_frames = len(pts)
        seconds = container.duration / av.time_base if container.duration else 0.0
        if (path.suffix.lower() == ".gif" or not stream.average_rate) and seconds > 0:
            # GIF delays are whole centiseconds and vary (12, 13, 12 ... cs for 8 fps): frames / duration is
            # exact where FFmpeg's average_rate reports the first delay only.
            fps = num_frames / seconds
        else:
            fps = float(stream.average_rate or stream.guessed_rate or 0.0)
        self.info = VideoInfo(path=path, num_frames=num_frames, fps=check_fps(path, fps), width=width, height=height)
        self.requested_size = decode_size(height, width, short_side)
        self._first = first

    def _decode_first(self, path: Path):
        self._seek(0)
        for frame in self._frames:
            self._position = 0
            return frame
        raise VideoDecodeError(f"video file {path} has no decodable frames")

    def _seek(self, index: int) -> None:
        """Position the decoder at the keyframe at or before frame ``index`` (the start without timestamps)."""
        import av

        stream = self._stream
        if not self._seekable or index == 0:
            target = self._pts[0] if self._seekable else (stream.start_time or 0)
        else:
            target = self._pts[index]
        try:
            self._container.seek(target, stream=stream, backward=True, any_frame=False)
        except Exception as err:  # a demuxer that cannot seek (some GIFs): start over from the beginning
            logger.debug("cannot seek in %s (%s); reopening it", self.path, err)
            self._container.close()
            self._container = av.open(str(self.path))
            stream = self._stream = self._container.streams.video[0]
            stream.thread_type = "AUTO"
        self._frames = self._container.decode(stream)
        self._position = -1

    def _to_rgb(self, frame) -> np.ndarray:
        """One decoded frame -> uint8 (h, w, 3) at ``out_size``; only this frame is ever at full size."""
        h, w = self.out_size
        if self._turns % 2:
            h, w = w, h  # resize in coded orientation, then turn
        rgb = resize_frame(frame.to_ndarray(format="rgb24"), (h, w))
        return rotate(rgb, self._turns)  # (h, w, 3)

    def _read(self, indices: np.ndarray) -> np.ndarray:
        out = np.empty((len(indices), *self.out_size, 3), dtype=np.uint8)
        for n, index in enumerate(indices.tolist()):
            if index == 0 and self._first is not None:
                out[n] = self._to_rgb(self._first)
                continue
            out[n] = self._to_rgb(self._decode(index) if self._seekable else self._decode_counting(index))
        self._first = None
        return out

    def _decode(self, index: int):
        """The frame with presentation number ``index``: seek when a keyframe lies ahead of the decoder."""
        target = self._pts[index]
        key = self._keys[bisect.bisect_right(self._keys, target) - 1] if self._keys and self._keys[0] <= target else None
        here = self._pts[self._position] if self._position >= 0 else None
        if self._frames is None or here is None or here >= target or (key is not None and key > here):
            self._seek(index)
        for attempt in range(2):
            for frame in self._frames:
                if frame.pts is None:
                    break
                if frame.pts < target:
                    continue
                self._position = bisect.bisect_left(self._pts, frame.pts)
                if frame.pts == target:
                    return frame
                break  # overshot: the seek landed past the frame
            if attempt == 0:  # once more, decoding from the very start
                self._seek(0)
        raise VideoDecodeError(f"cannot decode frame {index} of video file {self.path}: truncated or corrupt")

    def _decode_counting(self, index: int):
        """Without timestamps: decode from the start (or onwards), counting frames."""
        if self._frames is None or self._position >= index:
            self._seek(0)
        for frame in self._frames:
            self._position += 1
            if self._position == index:
                return frame
        raise VideoDecodeError(f"cannot decode frame {index} of video file {self.path}: it has only "
                               f"{self._position + 1} decodable frames")

    def close(self) -> None:
        container, self._container = getattr(self, "_container", None), None
        self._frames = self._first = None
        if container is not None:
            container.close()

