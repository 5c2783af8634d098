"""Frames -> model input: short side resized to FRAME_SIZE, center crop, [-1, 1] (DESIGN section 2)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

from divot.constants import DENSE_FRAMES, FRAME_SIZE, NUM_SPARSE_FRAMES, PIXEL_MEAN, PIXEL_STD, SPARSE_INDICES
from divot.data.decoders.base import scaled_size

# Frames are converted to float in chunks so that a few hundred full-HD frames never sit in memory as
# float32 at native size (320 x 1080p would be 8 GB).
_CHUNK = 16


def frames_to_tensor(frames, size: int = FRAME_SIZE, out: torch.Tensor | None = None) -> torch.Tensor:
    """uint8 RGB frames (t, h, w, 3) -> float32 (t, 3, size, size) in [-1, 1].

    The short side is resized to ``size`` (bilinear, antialiased), then the center ``size`` x ``size``
    square is cropped; pixels are normalised with PIXEL_MEAN / PIXEL_STD (0.5 / 0.5).
    Accepts a numpy array or a tensor. ``out``, a float32 tensor (t, 3, size, size), receives the result
    in place (and is returned), so a caller filling a larger batch holds no second copy.

    Frames already at the resized size (decoded at the model's size) are cropped before they become float:
    every step after the resize is elementwise, so the values are the same as cropping after, at a
    fraction of the memory.
    """
    if isinstance(frames, torch.Tensor):
        frames = frames.detach().cpu()
    else:
        frames = np.ascontiguousarray(frames)
        frames = torch.from_numpy(frames if frames.flags.writeable else frames.copy())
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != torch.uint8:
        raise ValueError(f"expected uint8 frames (t, h, w, 3), got {tuple(frames.shape)} {frames.dtype}")
    if frames.shape[0] == 0 or frames.shape[1] == 0 or frames.shape[2] == 0:
        raise ValueError(f"expected non-empty frames (t, h, w, 3), got {tuple(frames.shape)}")
    if not (isinstance(size, int) and size > 0):
        raise ValueError(f"size must be a positive integer, got {size!r}")
    shape = (frames.shape[0], 3, size, size)
    if out is None:
        out = torch.empty(shape)
    elif tuple(out.shape) != shape or out.dtype != torch.float32:
        raise ValueError(f"out must be float32 {shape}, got {tuple(out.shape)} {out.dtype}")
    h, w = frames.shape[1:3]
    new_h, new_w = scaled_size(h, w, size)  # short side exactly size (what the decoders decode at)
    top, left = (new_h - size) // 2, (new_w - size) // 2
    mean = torch.tensor(PIXEL_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(PIXEL_STD).view(1, 3, 1, 1)
    for i in range(0, frames.shape[0], _CHUNK):
        if (new_h, new_w) == (h, w):  # nothing to resize: crop the uint8 frames first
            chunk = frames[i : i + _CHUNK, top : top + size, left : left + size]  # (c, size, size, 3)
            chunk = chunk.permute(0, 3, 1, 2).float().div_(255.0)  # (c, 3, size, size) in [0, 1]
        else:
            chunk = frames[i : i + _CHUNK].permute(0, 3, 1, 2).float().div_(255.0)  # (c, 3, h, w) in [0, 1]
            chunk = F.interpolate(chunk, size=(new_h, new_w), mode="bilinear", antialias=True, align_corners=False)
            chunk = chunk[:, :, top : top + size, left : left + size]  # (c, 3, size, size)
        target = out[i : i + _CHUNK]
        target.copy_(chunk.clamp_(0.0, 1.0)).sub_(mean).div_(std)
    return out


def to_sparse(clips: torch.Tensor) -> torch.Tensor:
    """Keep the tokenizer's sparse frames (SPARSE_INDICES): (..., 16, 3, h, w) -> (..., 5, 3, h, w)."""
    if clips.ndim < 4 or clips.shape[-4] != DENSE_FRAMES:
        raise ValueError(f"expected dense clips (..., {DENSE_FRAMES}, 3, h, w), got {tuple(clips.shape)}")
    index = torch.tensor(SPARSE_INDICES, device=clips.device)
    return clips.index_select(clips.ndim - 4, index)


def image_to_clip(image, size: int = FRAME_SIZE) -> torch.Tensor:
    """An image as a clip of 5 identical frames: float32 (5, 3, size, size) in [-1, 1].

    ``image`` is a uint8 array (h, w, 3), a PIL image or an image file path (read with PIL, any mode is
    converted to RGB).
    """
    if isinstance(image, (str, Path)):
        image = _read_image(Path(image))
    elif isinstance(image, Image.Image):
        image = np.asarray(image.convert("RGB"))
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image (h, w, 3) or an image path, got {image.shape} {image.dtype}")
    frame = frames_to_tensor(image[None], size)  # (1, 3, size, size)
    return frame.expand(NUM_SPARSE_FRAMES, -1, -1, -1).clone()  # (5, 3, size, size)


def _read_image(path: Path) -> np.ndarray:
    if not path.is_file():
        raise FileNotFoundError(f"image file {path} does not exist")
    try:
        with Image.open(path) as img:
            return np.asarray(img.convert("RGB"))  # (h, w, 3) uint8
    except (UnidentifiedImageError, OSError) as err:
        raise ValueError(f"cannot read image file {path}: {err}") from err


def dense_frame_subset(num_frames: int, num_dense: int = DENSE_FRAMES) -> list[int]:
    """Which of a clip's ``num_dense`` frames a de-tokenizer rendering ``num_frames`` frames stands for:
    a constant stride where it divides (16 -> 8: 0, 2, ..., 14), else evenly spread."""
    if not 1 <= num_frames <= num_dense:
        raise ValueError(f"num_frames must be in 1..{num_dense}, got {num_frames}")
    if num_dense % num_frames == 0:
        return list(range(0, num_dense, num_dense // num_frames))
    return np.floor(np.linspace(0, num_dense - 1, num_frames) + 0.5).astype(int).tolist()
