"""Video probing and frame decoding: decord first, PyAV where decord 0.6 cannot cope.

decord 0.6 (the wheel on the project's machines) fails on two kinds of valid files, which PyAV decodes:
- GIFs: it cannot open them ("Failed to measure duration" / broken metadata);
- some frame widths (16, 24, 48, 17 ... pixels; 32, 40, 64, 160, 320 work): ``get_batch`` stops with
  "DECORDArrayCopyFromTo: The size must exactly match", a row-alignment bug in its frame copy.
So GIFs go straight to PyAV, and any other decord failure is retried with PyAV; only when both fail is a
``VideoDecodeError`` raised, carrying both reasons. Callers never see which backend was used.

``av`` is imported before ``decord`` on purpose: decord bundles an older libvpx, and loading it first breaks
PyAV's VP9 encoder (see ``divot.data.writers``).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import av  # must load before decord, see the module docstring
import decord
import numpy as np

from divot.constants import VIDEO_EXTENSIONS

logger = logging.getLogger(__name__)

_PYAV_ONLY_SUFFIXES = (".gif",)


class VideoDecodeError(ValueError):
    """A video file that exists but cannot be decoded (empty, truncated, not a video, no frames)."""


class _FrameIndexError(ValueError):
    """A requested frame number past the end of the video: the caller's mistake, not a decoding failure."""


@dataclass(frozen=True)
class VideoInfo:
    """What a video file holds. ``fps`` is the average native frame rate, frames are counted natively."""

    path: Path
    num_frames: int
    fps: float
    width: int
    height: int

    @property
    def duration(self) -> float:
        """Length in seconds (num_frames / fps)."""
        return self.num_frames / self.fps


def probe_video(path: str | Path) -> VideoInfo:
    """Frame count, frame rate and frame size of a video; decodes frame 0 to prove the file is readable.

    Raises FileNotFoundError for a missing file and VideoDecodeError (naming the file) for an empty,
    truncated or corrupt file, a file without a video stream or one with no decodable frame.
    """
    path = _check_file(path)
    decord_error = None
    if path.suffix.lower() not in _PYAV_ONLY_SUFFIXES:
        try:
            return _probe_decord(path)
        except Exception as err:  # decord raises RuntimeError / DECORDError / its own checks
            decord_error = err
            logger.debug("decord could not probe %s (%s); trying PyAV", path, _short(err))
    try:
        return _probe_pyav(path)
    except VideoDecodeError:
        raise
    except Exception as err:
        raise VideoDecodeError(_failure(path, "probe", decord_error, err)) from err


def read_frames(path: str | Path, indices) -> np.ndarray:
    """Decode the frames at ``indices`` (native frame numbers, any order, repeats allowed).

    Returns uint8 RGB frames (n, h, w, 3) in the order of ``indices``. Each distinct frame is decoded once.
    Raises FileNotFoundError / VideoDecodeError naming the file, ValueError for bad indices.
    """
    path = _check_file(path)
    indices = np.asarray(indices)
    if indices.ndim != 1 or indices.size == 0:
        raise ValueError(f"indices for {path} must be a non-empty 1-D sequence, got shape {indices.shape}")
    if not np.issubdtype(indices.dtype, np.integer):
        raise ValueError(f"indices for {path} must be integers, got dtype {indices.dtype}")
    if indices.min() < 0:
        raise ValueError(f"indices for {path} must be >= 0, got {int(indices.min())}")
    unique, inverse = np.unique(indices, return_inverse=True)  # (u,), (n,)
    decord_error = None
    frames = None
    if path.suffix.lower() not in _PYAV_ONLY_SUFFIXES:
        try:
            frames = _read_decord(path, unique)
        except _FrameIndexError:
            raise
        except Exception as err:
            decord_error = err
            logger.debug("decord could not read %s (%s); trying PyAV", path, _short(err))
    if frames is None:
        try:
            frames = _read_pyav(path, unique)
        except (VideoDecodeError, _FrameIndexError):
            raise
        except Exception as err:
            raise VideoDecodeError(_failure(path, "decode", decord_error, err)) from err
    return frames[inverse.reshape(-1)]  # (n, h, w, 3)


def list_videos(folder: str | Path, recursive: bool = False) -> list[Path]:
    """Video files in ``folder`` (suffix in VIDEO_EXTENSIONS, any case), sorted by path.

    Hidden files (name starting with ".", e.g. macOS "._clip.mp4" resource forks) are skipped.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"video folder {folder} does not exist or is not a folder")
    candidates = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(
        p for p in candidates
        if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS and not p.name.startswith(".")
    )


# ----------------------------------------------------------------------------------------------- helpers


def _check_file(path: str | Path) -> Path:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"video file {path} does not exist")
    if not path.is_file():
        raise VideoDecodeError(f"video path {path} is not a file")
    if path.stat().st_size == 0:
        raise VideoDecodeError(f"video file {path} is empty (0 bytes)")
    return path


def _short(err: BaseException) -> str:
    """The first line of an error message (decord appends long C++ stack traces)."""
    text = str(err).strip().splitlines()
    return (text[0] if text else type(err).__name__)[:300]


def _failure(path: Path, action: str, decord_error: BaseException | None, pyav_error: BaseException) -> str:
    reasons = f"PyAV: {_short(pyav_error)}"
    if decord_error is not None:
        reasons = f"decord: {_short(decord_error)}; {reasons}"
    return f"cannot {action} video file {path}: not a readable video, truncated or corrupt ({reasons})"


def _as_numpy(batch) -> np.ndarray:
    """decord batch -> numpy, whatever bridge (native / torch) decord is set to."""
    if hasattr(batch, "asnumpy"):
        return batch.asnumpy()
    if hasattr(batch, "numpy"):
        return batch.numpy()
    return np.asarray(batch)


def _check_fps(path: Path, fps: float) -> float:
    if not (math.isfinite(fps) and fps > 0):
        raise VideoDecodeError(f"video file {path} has no usable frame rate (got {fps})")
    return float(fps)


def _probe_decord(path: Path) -> VideoInfo:
    reader = decord.VideoReader(str(path))
    num_frames = len(reader)
    if num_frames < 1:
        raise VideoDecodeError(f"video file {path} has no frames")
    first = _as_numpy(reader.get_batch([0]))  # (1, h, w, 3); also trips the width bug early
    fps = _check_fps(path, reader.get_avg_fps())
    return VideoInfo(path=path, num_frames=num_frames, fps=fps, width=first.shape[2], height=first.shape[1])


def _read_decord(path: Path, unique: np.ndarray) -> np.ndarray:
    reader = decord.VideoReader(str(path))
    if unique[-1] >= len(reader):
        raise _FrameIndexError(f"frame index {int(unique[-1])} is out of range for {path}, which has {len(reader)} frames")
    frames = _as_numpy(reader.get_batch(unique.tolist()))  # (u, h, w, 3)
    if frames.shape[0] != len(unique):
        raise VideoDecodeError(f"decord returned {frames.shape[0]} frames for {len(unique)} indices from {path}")
    return frames


def _video_stream(path: Path, container):
    if not container.streams.video:
        raise VideoDecodeError(f"video file {path} has no video stream (no decodable frames)")
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    return stream


def _probe_pyav(path: Path) -> VideoInfo:
    with av.open(str(path)) as container:
        stream = _video_stream(path, container)
        first = None
        for frame in container.decode(stream):
            first = frame
            break
        if first is None:
            raise VideoDecodeError(f"video file {path} has no decodable frames")
        num_frames = stream.frames
        is_gif = path.suffix.lower() == ".gif"
        if num_frames <= 0:  # MKV / WebM headers carry no count: count the packets (no decoding)
            container.seek(0)
            num_frames = sum(1 for packet in container.demux(stream) if packet.size)
        seconds = container.duration / av.time_base if container.duration else 0.0
        # GIF delays are whole centiseconds and vary (12, 13, 12 ... cs for 8 fps): frames / duration is
        # exact where FFmpeg's average_rate reports the first delay only.
        if (is_gif or not stream.average_rate) and seconds > 0:
            fps = num_frames / seconds
        else:
            fps = float(stream.average_rate or stream.guessed_rate or 0.0)
        return VideoInfo(path=path, num_frames=num_frames, fps=_check_fps(path, fps), width=first.width, height=first.height)


def _read_pyav(path: Path, unique: np.ndarray) -> np.ndarray:
    """Decode sequentially up to the last wanted frame (frame-exact, unlike seeking)."""
    wanted = set(unique.tolist())
    last = int(unique[-1])
    found: dict[int, np.ndarray] = {}
    count = 0
    with av.open(str(path)) as container:
        stream = _video_stream(path, container)
        for i, frame in enumerate(container.decode(stream)):
            count = i + 1
            if i in wanted:
                found[i] = frame.to_ndarray(format="rgb24")  # (h, w, 3)
            if i >= last:
                break
    if count == 0:
        raise VideoDecodeError(f"video file {path} has no decodable frames")
    if last >= count:
        raise _FrameIndexError(f"frame index {last} is out of range for {path}, which has {count} decodable frames")
    return np.stack([found[i] for i in unique.tolist()])  # (u, h, w, 3)
