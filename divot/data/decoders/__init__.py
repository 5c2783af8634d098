"""Video decoder backends and the run-time choice between them.

Backends (one module each): ``decord`` (fast random access), ``torchcodec`` (PyTorch's FFmpeg decoder) and
``pyav`` (FFmpeg through PyAV: reads everything, a hard dependency, the fallback). Each opens a file once,
decodes only the frames asked for, straight at the size asked for (``short_side``), in display orientation.

Choice: ``backend=`` or the ``DIVOT_VIDEO_BACKEND`` environment variable forces one backend (its errors are
raised as they are); otherwise (``auto``) the first installed of decord, torchcodec is tried and any failure
to open or decode a file is retried with PyAV, which also takes GIFs directly. Only when PyAV fails too is a
``VideoDecodeError`` raised, carrying every reason. Nothing here imports av, decord or torchcodec until a file
is opened.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path

import numpy as np

from divot.data.decoders.base import (
    FrameIndexError,
    VideoDecodeError,
    VideoFile,
    VideoInfo,
    check_file,
    decode_size,
    scaled_size,
    short_reason,
)

__all__ = ["BACKENDS", "BACKEND_ENV", "FrameIndexError", "VideoDecodeError", "VideoFile", "VideoInfo",
           "available_backends", "decode_size", "open_video", "scaled_size"]

logger = logging.getLogger(__name__)

BACKENDS = ("decord", "torchcodec", "pyav")  # the automatic choice's order of preference
BACKEND_ENV = "DIVOT_VIDEO_BACKEND"
_MODULES = {"decord": "decord", "torchcodec": "torchcodec", "pyav": "av"}
_UNUSABLE: dict[str, str] = {}  # backend -> why it failed to load in this process (e.g. missing FFmpeg libs)


def available_backends() -> list[str]:
    """Installed backends, in the automatic choice's order (installed: importable, not yet proven to load)."""
    return [name for name in BACKENDS if importlib.util.find_spec(_MODULES[name]) is not None]


def open_video(path: str | Path, short_side: int | None = None, backend: str | None = None) -> VideoFile:
    """Open a video once for decoding.

    Args:
        path: the video file.
        short_side: decode at the smallest size whose short side is >= this (aspect kept; see
            ``decode_size``); None decodes at the native size.
        backend: "decord", "torchcodec", "pyav" or "auto"; None reads DIVOT_VIDEO_BACKEND (default "auto").

    Returns an open ``VideoFile`` (a context manager): ``.info`` and ``.read(sorted distinct indices)``.
    Raises FileNotFoundError for a missing file, VideoDecodeError naming the file when it cannot be decoded,
    ValueError for an unknown backend.
    """
    path = check_file(path)
    name = _choose(backend)
    if name != "auto":
        return _open_with(name, path, short_side)
    return _AutoVideo(path, short_side)


def _choose(backend: str | None) -> str:
    name = (backend or os.environ.get(BACKEND_ENV) or "auto").strip().lower()
    if name not in (*BACKENDS, "auto"):
        raise ValueError(f"unknown video backend {name!r} (from {'backend=' if backend else BACKEND_ENV}); "
                         f"expected one of auto, {', '.join(BACKENDS)}")
    if name != "auto" and importlib.util.find_spec(_MODULES[name]) is None:
        raise ValueError(f"video backend {name!r} was asked for but {_MODULES[name]} is not installed "
                         f"(pip install {_MODULES[name]})")
    return name


def _open_with(name: str, path: Path, short_side: int | None) -> VideoFile:
    """Open with one backend; every failure but a missing file becomes a VideoDecodeError naming the file."""
    try:
        if name == "decord":
            from divot.data.decoders.decord_decoder import DecordVideo as cls
        elif name == "torchcodec":
            from divot.data.decoders.torchcodec_decoder import TorchCodecVideo as cls
        else:
            from divot.data.decoders.pyav_decoder import PyAVVideo as cls
    except Exception as err:  # e.g. torchcodec installed without the FFmpeg libraries it links to
        _UNUSABLE[name] = short_reason(err)
        raise VideoDecodeError(f"cannot open video file {path}: backend {name} does not load "
                               f"({_UNUSABLE[name]})") from err
    try:
        return cls(path, short_side)
    except VideoDecodeError:
        raise
    except Exception as err:
        if name == "torchcodec" and "load" in str(err).lower() and "librar" in str(err).lower():
            _UNUSABLE[name] = short_reason(err)
        raise VideoDecodeError(f"cannot open video file {path} with {name}: not a readable video, truncated or "
                               f"corrupt ({short_reason(err)})") from err


class _AutoVideo(VideoFile):
    """The preferred installed backend, with PyAV taking over wherever it fails (opening or decoding)."""

    def __init__(self, path: Path, short_side: int | None):
        super().__init__(path, None)
        self._short_side = short_side
        self._reasons: list[str] = []
        self._video: VideoFile | None = None
        for name in BACKENDS[:-1]:
            if name in _UNUSABLE or importlib.util.find_spec(_MODULES[name]) is None:
                continue
            if name == "decord" and path.suffix.lower() == ".gif":
                continue  # decord 0.6 cannot open GIFs
            try:
                self._video = _open_with(name, path, short_side)
                break
            except VideoDecodeError as err:
                self._note(name, err)
        if self._video is None:
            self._video = self._pyav()
        self.info, self.requested_size = self._video.info, self._video.requested_size

    @property
    def backend(self) -> str:  # the backend now decoding
        return self._video.backend if self._video is not None else ""

    def _note(self, name: str, err: BaseException) -> None:
        cause = err.__cause__ or err
        self._reasons.append(f"{name}: {short_reason(cause)}")
        logger.debug("%s could not read %s (%s); trying PyAV", name, self.path, short_reason(cause))

    def _pyav(self) -> VideoFile:
        try:
            return _open_with("pyav", self.path, self._short_side)
        except VideoDecodeError as err:
            reasons = "; ".join([*self._reasons, f"PyAV: {short_reason(err.__cause__ or err)}"])
            raise VideoDecodeError(f"cannot open video file {self.path}: not a readable video, truncated or "
                                   f"corrupt ({reasons})") from err

    def _read(self, indices: np.ndarray) -> np.ndarray:
        try:
            return self._video.read(indices)
        except FrameIndexError:
            raise
        except Exception as err:
            if self._video.backend == "pyav":
                raise VideoDecodeError(f"cannot decode video file {self.path}: {short_reason(err)}") from err
            self._note(self._video.backend, err)
            self._video.close()
            self._video = self._pyav()
            if self._video.out_size != self.out_size:
                raise VideoDecodeError(f"cannot decode video file {self.path}: PyAV sees frames of "
                                       f"{self._video.out_size}, not {self.out_size} ({'; '.join(self._reasons)})") from err
            return self._video.read(indices)

    def close(self) -> None:
        if self._video is not None:
            self._video.close()
