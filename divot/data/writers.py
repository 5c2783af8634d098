"""Write frames as video files: MP4 / MKV / MOV (H.264), AVI (MPEG-4), WebM (VP9), GIF, all through PyAV.

PyAV is imported at module level on purpose: decord bundles an older libvpx, and when decord's libraries
are loaded first, PyAV's VP9 encoder fails to open ("avcodec_open2 ... returned 22"). Importing ``av``
before ``decord`` (as this module and ``divot.data.video`` do) avoids the clash.
"""

from __future__ import annotations

import logging
import math
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch
from PIL import Image

logger = logging.getLogger(__name__)

# suffix -> (codec, encoder options); every codec here writes yuv420p.
# x264's macroblock-tree rate control made identical frames encode to different files now and then
# (about one small clip in ten); without it the files are bit-reproducible, which seeded datasets need.
_X264 = {"crf": "12", "preset": "veryfast", "x264-params": "mbtree=0"}
_CODECS = {
    ".mp4": ("libx264", _X264),
    ".mkv": ("libx264", _X264),
    ".mov": ("libx264", _X264),
    ".avi": ("mpeg4", {}),  # quality set through qscale below
    ".webm": ("libvpx-vp9", {"crf": "20", "b": "0", "deadline": "realtime", "cpu-used": "8"}),
}
_GIF_TIME_BASE = Fraction(1, 100)  # GIF frame delays are stored in centiseconds


def to_uint8_frames(frames) -> np.ndarray:
    """Frames -> uint8 array (t, h, w, 3).

    Accepts uint8 frames (t, h, w, 3) as a numpy array or tensor, or float frames (t, 3, h, w) in [-1, 1]
    as a numpy array or tensor (values outside [-1, 1] are clipped).
    """
    if isinstance(frames, torch.Tensor):
        frames = frames.detach().cpu()
        frames = (frames if frames.dtype == torch.uint8 else frames.float()).numpy()
    frames = np.asarray(frames)
    if frames.ndim != 4:
        raise ValueError(f"expected frames with 4 dims (t, h, w, 3) or (t, 3, h, w), got shape {frames.shape}")
    if frames.dtype == np.uint8:
        if frames.shape[-1] != 3:
            raise ValueError(f"uint8 frames must be (t, h, w, 3), got {frames.shape}")
        return frames
    if frames.shape[1] != 3:
        raise ValueError(f"float frames must be (t, 3, h, w) in [-1, 1], got {frames.shape}")
    frames = frames.astype(np.float32, copy=False)
    if not np.isfinite(frames).all():
        raise ValueError("float frames contain NaN or infinite values")
    frames = np.clip((frames.transpose(0, 2, 3, 1) + 1.0) * 127.5 + 0.5, 0, 255)  # (t, h, w, 3)
    return frames.astype(np.uint8)


def write_video(frames, path: str | Path, fps: float = 8.0) -> Path:
    """Write ``frames`` to ``path``; the format follows the suffix (.mp4 / .gif / .avi / .mkv / .webm / .mov).

    Args:
        frames: uint8 (t, h, w, 3) or float (t, 3, h, w) in [-1, 1], numpy or torch; t >= 1.
        path: output file; parent folders are created.
        fps: frames per second (> 0; at most 100 for GIF, whose delays are whole centiseconds).

    Every frame is written, also repeated ones. Video codecs need even sizes (yuv420p): odd heights /
    widths are padded by repeating the last row / column, so such a file decodes one pixel larger.
    GIF frames are quantised to a 256-colour palette per frame; their delays alternate between whole
    centiseconds so that the total duration matches ``fps`` (8 fps -> 12, 13, 12, 13 ... cs).
    Returns the path.
    """
    path = Path(path)
    arr = to_uint8_frames(frames)
    if arr.shape[0] == 0:
        raise ValueError(f"cannot write {path}: no frames (got shape {arr.shape})")
    if not (isinstance(fps, (int, float)) and math.isfinite(fps) and fps > 0):
        raise ValueError(f"cannot write {path}: fps must be a positive number, got {fps!r}")
    suffix = path.suffix.lower()
    if suffix != ".gif" and suffix not in _CODECS:
        raise ValueError(f"unsupported video suffix {suffix!r} for {path}; use .mp4, .gif, .avi, .mkv, .webm or .mov")
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".gif":
        _write_gif(arr, path, fps)
    else:
        _write_encoded(arr, path, fps, suffix)
    return path


def _write_encoded(arr: np.ndarray, path: Path, fps: float, suffix: str) -> None:
    """uint8 (t, h, w, 3) -> an H.264 / MPEG-4 / VP9 file at ``path``."""
    h, w = arr.shape[1:3]
    ph, pw = h + h % 2, w + w % 2
    if (ph, pw) != (h, w):
        logger.warning("%s: padding frames from %dx%d to %dx%d (yuv420p needs even sizes)", path, h, w, ph, pw)
        arr = np.pad(arr, ((0, 0), (0, ph - h), (0, pw - w), (0, 0)), mode="edge")  # (t, ph, pw, 3)
    codec, options = _CODECS[suffix]
    try:
        with av.open(str(path), mode="w") as container:
            stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
            stream.width, stream.height = pw, ph
            stream.pix_fmt = "yuv420p"
            stream.options = dict(options)
            if codec == "mpeg4":
                stream.codec_context.qscale = 2  # the default bit rate smears small frames badly
            for frame in arr:
                for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
    except av.FFmpegError as err:
        path.unlink(missing_ok=True)
        hint = ""
        if codec == "libvpx-vp9" and "decord" in sys.modules:
            hint = " (decord was probably imported before PyAV and its bundled libvpx shadows PyAV's: import av first)"
        raise ValueError(f"could not encode {path} with {codec}: {err}{hint}") from err


def _write_gif(arr: np.ndarray, path: Path, fps: float) -> None:
    """uint8 (t, h, w, 3) -> an animated GIF (PyAV's encoder; Pillow would merge identical frames)."""
    # Frame i is shown at pts round(i * 100 / fps) centiseconds: the pts must strictly increase.
    if fps > 100:
        raise ValueError(f"cannot write {path}: GIF delays are whole centiseconds, so fps must be <= 100, got {fps}")
    h, w = arr.shape[1:3]
    edges = [round(i * 100 / fps) for i in range(len(arr) + 1)]  # frame i shows from edges[i] to edges[i + 1]
    delays = {edges[i]: edges[i + 1] - edges[i] for i in range(len(arr))}  # pts -> delay (cs)
    with av.open(str(path), mode="w", format="gif") as container:
        stream = container.add_stream("gif", rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height = w, h
        stream.pix_fmt = "pal8"
        stream.codec_context.time_base = _GIF_TIME_BASE
        for i, frame in enumerate(arr):
            quantised = Image.fromarray(frame).quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
            palette_rgb = np.asarray(quantised.getpalette(), dtype=np.uint8).reshape(-1, 3)  # (colours, 3)
            palette = np.zeros((256, 4), dtype=np.uint8)  # (256, ARGB) as PyAV expects
            palette[:, 0] = 255
            palette[: len(palette_rgb), 1:] = palette_rgb
            video_frame = av.VideoFrame.from_ndarray((np.asarray(quantised, dtype=np.uint8), palette), format="pal8")
            video_frame.pts = edges[i]
            video_frame.time_base = _GIF_TIME_BASE
            for packet in stream.encode(video_frame):
                _mux_gif_packet(container, packet, delays)
        for packet in stream.encode():
            _mux_gif_packet(container, packet, delays)


def _mux_gif_packet(container, packet, delays: dict[int, int]) -> None:
    # An explicit duration fixes the last frame's delay, which the muxer would otherwise guess.
    packet.duration = delays.get(packet.pts, packet.duration)
    container.mux(packet)
