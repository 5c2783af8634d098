"""Self-supervised targets of the T1 layout terms (``LayoutConfig``), computed from the clip's own pixels."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchvision.ops import roi_align

from divot.diffusion.objective import foreground_mask


def centred_masks(frames: torch.Tensor, size: int, threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Each frame's foreground cut out by its square bounding box and resampled to ``size`` x ``size``.

    Returns (masks (b, t, size, size), present (b, t)): the object's silhouette with where it is and how
    big it is taken out, and whether a frame has any foreground. The silhouette carries no colour, so a
    linear read-out of it from the tokens asks for shape apart from colour.
    """
    if frames.ndim != 5:
        raise ValueError(f"frames must be (b, t, 3, h, w), got {tuple(frames.shape)}")
    mask = foreground_mask(frames.float().transpose(1, 2), threshold)[:, 0].float()  # (b, t, h, w)
    b, t, h, w = mask.shape
    flat = mask.flatten(0, 1)  # (n, h, w)
    cols, rows = flat.amax(dim=1), flat.amax(dim=2)  # (n, w), (n, h) occupancy
    present = cols.amax(dim=1) > 0

    def span(occ: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.arange(occ.shape[1], device=occ.device, dtype=torch.float32)
        low = torch.where(occ > 0, idx, torch.full_like(idx, float(occ.shape[1]))).amin(dim=1)
        high = torch.where(occ > 0, idx + 1, torch.zeros_like(idx)).amax(dim=1)
        return low, high

    x1, x2 = span(cols)
    y1, y2 = span(rows)
    side = torch.maximum(x2 - x1, y2 - y1).clamp(min=1.0)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    idx = torch.arange(flat.shape[0], device=flat.device, dtype=torch.float32)
    boxes = torch.stack([idx, cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2], dim=1)
    out = roi_align(flat[:, None], boxes, output_size=size, spatial_scale=1.0, sampling_ratio=2, aligned=True)
    out = out[:, 0] * present[:, None, None]
    return out.view(b, t, size, size), present.view(b, t)


def pooled_frames(frames: torch.Tensor, size: int) -> torch.Tensor:
    """frames (b, t, 3, h, w) average-pooled to (b, t, 3, size, size)."""
    b, t = frames.shape[:2]
    return F.adaptive_avg_pool2d(frames.float().flatten(0, 1), size).view(b, t, 3, size, size)
