"""Write frames as MP4 (PyAV, H.264) or GIF (imageio)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch


def to_uint8_frames(frames) -> np.ndarray:
    """Frames -> uint8 array (t, h, w, 3).

    Accepts a uint8 numpy array (t, h, w, 3) or a float tensor / array (t, 3, h, w) in [-1, 1].
    """
    if isinstance(frames, torch.Tensor):
        frames = frames.detach().float().cpu().numpy()
    frames = np.asarray(frames)
    if frames.ndim != 4:
        raise ValueError(f"expected frames with 4 dims (t, h, w, 3) or (t, 3, h, w), got shape {frames.shape}")
    if frames.dtype == np.uint8:
        if frames.shape[-1] != 3:
            raise ValueError(f"uint8 frames must be (t, h, w, 3), got {frames.shape}")
        return frames
    if frames.shape[1] != 3:
        raise ValueError(f"float frames must be (t, 3, h, w) in [-1, 1], got {frames.shape}")
    frames = np.clip((frames.transpose(0, 2, 3, 1) + 1.0) * 127.5 + 0.5, 0, 255)
    return frames.astype(np.uint8)


def write_video(frames, path: str | Path, fps: float = 8.0) -> Path:
    """Write ``frames`` to ``path``; the format follows the suffix (.mp4 / .gif / .avi / .mkv / .webm)."""
    import av  # local import: only writers need it
    import imageio.v3 as iio

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = to_uint8_frames(frames)
    suffix = path.suffix.lower()
    if suffix == ".gif":
        iio.imwrite(path, arr, extension=".gif", duration=1000.0 / fps, loop=0)
        return path
    codec = {".mp4": "libx264", ".mkv": "libx264", ".avi": "mpeg4", ".webm": "libvpx-vp9", ".mov": "libx264"}
    if suffix not in codec:
        raise ValueError(f"unsupported video suffix {suffix!r} for {path}; use .mp4, .gif, .avi, .mkv, .webm or .mov")
    from fractions import Fraction
    h, w = arr.shape[1:3]
    # yuv420p needs even sizes: pad by one pixel where needed.
    ph, pw = h + h % 2, w + w % 2
    if (ph, pw) != (h, w):
        arr = np.pad(arr, ((0, 0), (0, ph - h), (0, pw - w), (0, 0)), mode="edge")
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec[suffix], rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height = pw, ph
        stream.pix_fmt = "yuv420p"
        if suffix in (".mp4", ".mkv", ".mov"):
            stream.options = {"crf": "12", "preset": "fast"}
        for frame in arr:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path
