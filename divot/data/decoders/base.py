"""What every decoder backend shares: the errors, ``VideoInfo``, the open-once ``VideoFile`` interface,
the decode size and the display rotation.

A backend opens a file once (``VideoFile``), reports what it holds (``info``, frames in display orientation)
and decodes sorted, distinct frame numbers at a given output size, so that frames reach memory already near
the size the model uses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np


class VideoDecodeError(ValueError):
    """A video file that exists but cannot be decoded (empty, truncated, not a video, no frames)."""


class FrameIndexError(ValueError):
    """A requested frame number past the end of the video: the caller's mistake, not a decoding failure."""


@dataclass(frozen=True)
class VideoInfo:
    """What a video file holds. ``fps`` is the average native frame rate, frames are counted natively;
    ``width`` / ``height`` are the frame size as displayed (after any rotation the file asks for)."""

    path: Path
    num_frames: int
    fps: float
    width: int
    height: int

    @property
    def duration(self) -> float:
        """Length in seconds (num_frames / fps)."""
        return self.num_frames / self.fps


class VideoFile:
    """An open video. Subclasses set ``backend`` and ``info`` and implement ``_read``.

    ``read(indices)`` takes sorted, distinct native frame numbers and returns uint8 RGB frames
    (n, h, w, 3) in display orientation at the size the file was opened with (``out_size``: (h, w)).
    """

    backend = ""

    def __init__(self, path: Path, out_size: tuple[int, int] | None):
        self.path = path
        self.requested_size = out_size
        self.info: VideoInfo

    @property
    def out_size(self) -> tuple[int, int]:
        """(h, w) of the frames ``read`` returns."""
        return self.requested_size or (self.info.height, self.info.width)

    def read(self, indices) -> np.ndarray:
        indices = np.asarray(indices, dtype=np.int64)
        if indices.ndim != 1 or indices.size == 0 or np.any(np.diff(indices) <= 0):
            raise ValueError(f"indices for {self.path} must be sorted, distinct and non-empty, got {indices}")
        if indices[0] < 0:
            raise ValueError(f"indices for {self.path} must be >= 0, got {int(indices[0])}")
        if indices[-1] >= self.info.num_frames:
            raise FrameIndexError(f"frame index {int(indices[-1])} is out of range for {self.path}, which has "
                                  f"{self.info.num_frames} frames")
        try:
            frames = self._read(indices)  # (n, h, w, 3)
        except (VideoDecodeError, FrameIndexError):  # these name the file already
            raise
        except Exception as err:  # decord's DECORDError, FFmpeg errors, torchcodec's RuntimeError
            raise VideoDecodeError(f"cannot decode video file {self.path} with {self.backend}: "
                                   f"{short_reason(err)}") from err
        if frames.shape != (len(indices), *self.out_size, 3) or frames.dtype != np.uint8:
            raise VideoDecodeError(f"{self.backend} returned frames {frames.shape} {frames.dtype} for "
                                   f"{len(indices)} indices at {self.out_size} from {self.path}")
        return frames

    def _read(self, indices: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def close(self) -> None:
        """Release the file (idempotent)."""

    def __enter__(self) -> VideoFile:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def scaled_size(height: int, width: int, short_side: int) -> tuple[int, int]:
    """(h, w) with the short side resized to ``short_side`` and the aspect ratio kept (long side rounded).

    The same numbers ``divot.data.transforms.frames_to_tensor`` resizes to, so frames decoded at this size
    reach the transform needing only its center crop.
    """
    scale = short_side / min(height, width)
    return max(short_side, round(height * scale)), max(short_side, round(width * scale))


def decode_size(height: int, width: int, short_side: int | None) -> tuple[int, int] | None:
    """The size to decode a (height, width) video at for a model wanting ``short_side``: the smallest size with
    the short side >= ``short_side`` (aspect kept), or None (native size) when the video is not larger."""
    if short_side is None or min(height, width) <= short_side:
        return None
    return scaled_size(height, width, short_side)


def resize_frame(frame: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    """Resize a uint8 RGB frame (h, w, 3) to ``size`` (h, w) with Pillow's bilinear filter, which widens with the
    shrink factor (antialiased) like the transform's torch resize: within 2 / 255 of it (tests/data/
    test_decoders.py). Converting to RGB at the native size first keeps FFmpeg's colour conversion exactly the
    reference path's; swscale's scaled YUV -> RGB path shifts colours by about one level."""
    if size is None or frame.shape[:2] == tuple(size):
        return frame
    from PIL import Image

    return np.asarray(Image.fromarray(frame).resize((size[1], size[0]), Image.Resampling.BILINEAR))


def rotation_turns(degrees) -> int:
    """Quarter turns (for ``np.rot90``, counter-clockwise) of a display rotation in degrees (FFmpeg's sign:
    90 = the picture is shown turned 90 degrees counter-clockwise). Non-multiples of 90 are not applied."""
    if degrees is None or not math.isfinite(float(degrees)):
        return 0
    turns = float(degrees) / 90.0
    return int(round(turns)) % 4 if abs(turns - round(turns)) < 1e-3 else 0


def rotate(frame: np.ndarray, turns: int) -> np.ndarray:
    """Apply ``turns`` counter-clockwise quarter turns to an (h, w, 3) frame."""
    return np.ascontiguousarray(np.rot90(frame, turns)) if turns else frame


def check_file(path: str | Path) -> Path:
    """The path, or FileNotFoundError / VideoDecodeError naming it when it cannot be a video."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"video file {path} does not exist")
    if not path.is_file():
        raise VideoDecodeError(f"video path {path} is not a file")
    if path.stat().st_size == 0:
        raise VideoDecodeError(f"video file {path} is empty (0 bytes)")
    return path


def check_fps(path: Path, fps: float) -> float:
    if not (fps is not None and math.isfinite(fps) and fps > 0):
        raise VideoDecodeError(f"video file {path} has no usable frame rate (got {fps})")
    return float(fps)


def short_reason(err: BaseException) -> str:
    """The first line of an error message (decord appends long C++ stack traces)."""
    text = str(err).strip().splitlines()
    return (text[0] if text else type(err).__name__)[:300]
