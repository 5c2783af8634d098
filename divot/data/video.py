"""Video probing and frame decoding: the public face of ``divot.data.decoders``.

Backends (decord, torchcodec, PyAV) are chosen at run time, see ``divot.data.decoders``: decord where it is
installed, else torchcodec, else PyAV, with PyAV retrying whatever another backend fails on (GIFs, decord
0.6's odd-width bug); ``DIVOT_VIDEO_BACKEND=pyav`` (or decord, torchcodec) forces one. Callers never need to
know which backend decoded a file. Frames come in display orientation (a phone video's rotation is applied).

For model input use ``divot.data.loading``: it opens a file once and decodes straight at the model's size.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from divot.constants import VIDEO_EXTENSIONS
from divot.data.decoders import VideoDecodeError, VideoFile, VideoInfo, open_video

__all__ = ["VideoDecodeError", "VideoFile", "VideoInfo", "list_videos", "open_video", "probe_video", "read_frames"]

logger = logging.getLogger(__name__)


def probe_video(path: str | Path, backend: str | None = None) -> VideoInfo:
    """Frame count, frame rate and (displayed) frame size of a video; decodes frame 0 to prove the file readable.

    Raises FileNotFoundError for a missing file and VideoDecodeError (naming the file) for an empty,
    truncated or corrupt file, a file without a video stream or one with no decodable frame.
    """
    with open_video(path, backend=backend) as video:
        video.read([0])
        return video.info


def read_frames(path: str | Path, indices, short_side: int | None = None, backend: str | None = None) -> np.ndarray:
    """Decode the frames at ``indices`` (native frame numbers, any order, repeats allowed).

    Returns uint8 RGB frames (n, h, w, 3) in the order of ``indices``, at the native (displayed) size, or, with
    ``short_side``, at the smallest size whose short side is >= ``short_side`` (aspect kept). Each distinct
    frame is decoded once. Raises FileNotFoundError / VideoDecodeError naming the file, ValueError for bad
    indices.
    """
    path = Path(path)
    indices = np.asarray(indices)
    if indices.ndim != 1 or indices.size == 0:
        raise ValueError(f"indices for {path} must be a non-empty 1-D sequence, got shape {indices.shape}")
    if not np.issubdtype(indices.dtype, np.integer):
        raise ValueError(f"indices for {path} must be integers, got dtype {indices.dtype}")
    if indices.min() < 0:
        raise ValueError(f"indices for {path} must be >= 0, got {int(indices.min())}")
    unique, inverse = np.unique(indices, return_inverse=True)  # (u,), (n,)
    with open_video(path, short_side=short_side, backend=backend) as video:
        frames = video.read(unique)  # (u, h, w, 3)
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

