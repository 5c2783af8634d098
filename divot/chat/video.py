"""``Video``: frames + a frame rate, as returned by ``Divot.generate_video``; and every accepted video input.

A video given to the chat API may be
- a path (``str`` / ``Path``) to a video file: decoded with the one clip sampler (DESIGN section 2);
- a ``Video``;
- a list of frames: PIL images or uint8 arrays (h, w, 3), taken to run at 8 fps;
- a uint8 array / tensor (t, h, w, 3), or a float array / tensor (t, 3, h, w) in [-1, 1], at 8 fps.
In-memory frames go through the same policy as files (clips of 2 seconds, 5 sparse frames each), so a file and
its decoded frames give the same tokens. Float frames are rounded to uint8 first (exact for frames that came
from uint8 pixels), because the frame transform works on uint8 pixels.
"""

from __future__ import annotations

import base64
import tempfile
from pathlib import Path

import numpy as np
import torch

from divot.constants import DENSE_FPS


class Video:
    """Frames (t, 3, H, W) and a frame rate.

    ``frames`` is a tensor (t, 3, H, W): float32 in [-1, 1] (what the de-tokenizer renders) or uint8 (what a file
    decodes to). Build from any frames layout the module docstring lists. ``settings``: how it was made
    (``Divot.generate_video`` records its settings, the seed and the text the model wrote before the video).

    Example::

        video = model.generate_video("a red circle moves left")
        video.save("circle.gif")      # or .mp4
        len(video), video.fps         # (8, 4.0) for the tiny de-tokenizer: 8 frames per 2-second clip
        video                         # in Jupyter: shown inline as an animated GIF
    """

    def __init__(self, frames, fps: float = DENSE_FPS, settings: dict | None = None):
        if not (isinstance(fps, (int, float)) and np.isfinite(fps) and fps > 0):
            raise ValueError(f"fps must be a positive number, got {fps!r}")
        self.frames = _to_channels_first(frames)
        self.fps = float(fps)
        self.settings = dict(settings or {})

    @classmethod
    def read(cls, path: str | Path) -> Video:
        """Every frame of a video file at its native frame rate (uint8 frames; mind the memory of long videos)."""
        from divot.data.video import probe_video, read_frames

        info = probe_video(path)
        frames = read_frames(path, np.arange(info.num_frames))  # (t, h, w, 3) uint8
        return cls(frames, fps=info.fps)

    def __len__(self) -> int:
        return self.frames.shape[0]

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return len(self) / self.fps

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) in pixels."""
        return tuple(self.frames.shape[2:])

    def to_uint8(self) -> np.ndarray:
        """uint8 frames (t, H, W, 3)."""
        from divot.data.writers import to_uint8_frames

        if self.frames.dtype == torch.uint8:
            return self.frames.permute(0, 2, 3, 1).contiguous().numpy()
        return to_uint8_frames(self.frames)

    def save(self, path: str | Path) -> Path:
        """Write the video; the suffix picks the format (.mp4, .gif, .webm, .avi, .mkv, .mov). Returns the path."""
        from divot.data.writers import write_video

        return write_video(self.to_uint8(), path, fps=self.fps)

    def to_gif_bytes(self) -> bytes:
        """The video as an animated GIF file's bytes."""
        with tempfile.TemporaryDirectory() as tmp:
            path = self.save(Path(tmp) / "video.gif")
            return path.read_bytes()

    def _repr_html_(self) -> str:
        # Jupyter shows this: an inline base64 GIF, scaled up (pixelated) so 32 px clips are visible.
        data = base64.b64encode(self.to_gif_bytes()).decode("ascii")
        h, w = self.size
        scale = max(1, 256 // max(h, w))
        return (f'<img src="data:image/gif;base64,{data}" width="{w * scale}" height="{h * scale}" '
                f'style="image-rendering: pixelated" alt="video: {len(self)} frames, {self.fps:g} fps">')

    def __repr__(self) -> str:
        h, w = self.size
        return f"Video({len(self)} frames, {h}x{w}, {self.fps:g} fps, {self.frames.dtype})"


def _to_channels_first(frames) -> torch.Tensor:
    """Any frames layout -> (t, 3, H, W) tensor, float32 in [-1, 1] or uint8."""
    if isinstance(frames, (list, tuple)):
        frames = frames_from_list(frames)
    if isinstance(frames, np.ndarray):
        frames = torch.from_numpy(np.ascontiguousarray(frames))
    if not isinstance(frames, torch.Tensor):
        raise ValueError(f"expected frames as a tensor, an array or a list of images, got {type(frames).__name__}")
    frames = frames.detach().cpu()
    if frames.ndim != 4 or frames.shape[0] == 0:
        raise ValueError(f"expected frames (t, h, w, 3) uint8 or (t, 3, h, w) float with t >= 1, "
                         f"got shape {tuple(frames.shape)}")
    if frames.dtype == torch.uint8:
        if frames.shape[-1] == 3:
            return frames.permute(0, 3, 1, 2).contiguous()  # (t, 3, h, w)
        if frames.shape[1] == 3:
            return frames.contiguous()
        raise ValueError(f"uint8 frames must be (t, h, w, 3), got {tuple(frames.shape)}")
    if not frames.is_floating_point() or frames.shape[1] != 3:
        raise ValueError(f"float frames must be (t, 3, h, w) in [-1, 1], got {tuple(frames.shape)} {frames.dtype}")
    return frames.float()


def frames_from_list(frames: list | tuple) -> np.ndarray:
    """A list of PIL images or uint8 arrays (h, w, 3) -> uint8 (t, h, w, 3)."""
    from PIL import Image

    if not frames:
        raise ValueError("expected a non-empty list of frames, got an empty list")
    arrays = []
    for i, frame in enumerate(frames):
        if isinstance(frame, Image.Image):
            frame = np.asarray(frame.convert("RGB"))
        frame = np.asarray(frame)
        if frame.ndim != 3 or frame.shape[-1] != 3 or frame.dtype != np.uint8:
            raise ValueError(f"frame {i}: expected a PIL image or a uint8 array (h, w, 3), "
                             f"got {frame.shape} {frame.dtype}")
        if arrays and frame.shape != arrays[0].shape:
            raise ValueError(f"frame {i} has size {frame.shape}, frame 0 has {arrays[0].shape}: frames must match")
        arrays.append(frame)
    return np.stack(arrays)


def as_video(video) -> Video:
    """A ``Video`` from any in-memory input (not a path)."""
    if isinstance(video, Video):
        return video
    from PIL import Image

    if isinstance(video, Image.Image):  # an image is a video of one frame
        video = [video]
    return Video(video)


def sparse_clips(video, size: int, max_clips: int) -> torch.Tensor:
    """The tokenizer's input for any video input: float32 (clips, 5, 3, size, size) in [-1, 1]."""
    from divot.data.loading import load_sparse_clips
    from divot.data.sampling import sample_clip_indices, sparse_indices
    from divot.data.transforms import frames_to_tensor

    if isinstance(video, (str, Path)):
        return load_sparse_clips(video, size=size, max_clips=max_clips)
    video = as_video(video)
    pixels = video.to_uint8()  # (t, h, w, 3)
    indices = sparse_indices(np.stack(sample_clip_indices(len(video), video.fps, max_clips=max_clips)))  # (clips, 5)
    unique, inverse = np.unique(indices, return_inverse=True)
    frames = frames_to_tensor(pixels[unique], size)  # (u, 3, size, size)
    return frames[torch.from_numpy(inverse.reshape(indices.shape))]  # (clips, 5, 3, size, size)
