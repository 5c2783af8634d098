"""Pixel metrics for reconstructions: PSNR and SSIM (Wang et al. 2004) on frames in [-1, 1].

Both take ``pred`` and ``target`` of the same shape (..., t, 3, H, W), compute one value per frame and return
the mean over the frames axis: (b, t, 3, H, W) -> (b,), (t, 3, H, W) -> (). ``per_frame=True`` keeps the
frames axis instead. The maths runs in float32 whatever the input dtype.

PSNR of identical frames is ``inf`` (no cap): a clip with one perfect frame has an infinite mean PSNR.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# Wang et al. 2004: an 11 x 11 circular-symmetric Gaussian window, sigma 1.5, K1 = 0.01, K2 = 0.03.
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03


def _check_frames(pred: torch.Tensor, target: torch.Tensor, name: str, min_side: int = 1) -> None:
    if not isinstance(pred, torch.Tensor) or not isinstance(target, torch.Tensor):
        raise ValueError(f"{name}: pred and target must be torch tensors, got {type(pred).__name__} and "
                         f"{type(target).__name__}")
    if pred.shape != target.shape:
        raise ValueError(f"{name}: pred and target must have the same shape, got {tuple(pred.shape)} and "
                         f"{tuple(target.shape)}")
    if pred.ndim < 4 or pred.shape[-3] != 3:
        raise ValueError(f"{name}: expected frames (..., t, 3, H, W), got shape {tuple(pred.shape)}")
    if min(pred.shape[-2:]) < min_side:
        raise ValueError(f"{name}: frames must be at least {min_side} x {min_side} px, got "
                         f"{tuple(pred.shape[-2:])}")
    if pred.shape[-4] == 0:
        raise ValueError(f"{name}: no frames (shape {tuple(pred.shape)})")


def _check_range(data_range: float, name: str) -> None:
    if not data_range > 0:
        raise ValueError(f"{name}: data_range must be > 0, got {data_range}")


def psnr(pred: torch.Tensor, target: torch.Tensor, data_range: float = 2.0, per_frame: bool = False) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB: 10 log10(data_range^2 / MSE), MSE over the 3 x H x W pixels of a frame.

    Args:
        pred, target: frames (..., t, 3, H, W); [-1, 1] frames have ``data_range`` 2.
        per_frame: return (..., t) per-frame values instead of the mean over t.

    Returns:
        float32 (...) mean over frames of the per-frame PSNR (``inf`` where a frame matches exactly).
    """
    _check_frames(pred, target, "psnr")
    _check_range(data_range, "psnr")
    diff = pred.float() - target.float()
    mse = diff.pow(2).mean(dim=(-3, -2, -1))  # (..., t)
    values = 10.0 * torch.log10(float(data_range) ** 2 / mse)  # (..., t); mse 0 -> inf
    return values if per_frame else values.mean(dim=-1)


def gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> torch.Tensor:
    """Normalised 1-D Gaussian (size,) float32, centred on the middle tap."""
    x = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def ssim(pred: torch.Tensor, target: torch.Tensor, data_range: float = 2.0, per_frame: bool = False) -> torch.Tensor:
    """Structural similarity (Wang et al. 2004), averaged over channels and the valid region of each frame.

    Local means, variances and the covariance are Gaussian-weighted (11 x 11, sigma 1.5, no sample-covariance
    correction), computed per channel where the window fits inside the frame (no padding); constants
    C1 = (0.01 L)^2, C2 = (0.03 L)^2 with L = ``data_range``.

    Args:
        pred, target: frames (..., t, 3, H, W) with H, W >= 11; [-1, 1] frames have ``data_range`` 2.
        per_frame: return (..., t) per-frame values instead of the mean over t.

    Returns:
        float32 (...) mean over frames of the per-frame SSIM (1 for identical frames).
    """
    _check_frames(pred, target, "ssim", min_side=SSIM_WINDOW)
    _check_range(data_range, "ssim")
    lead = pred.shape[:-3]  # (..., t)
    h, w = pred.shape[-2:]
    x = pred.float().reshape(-1, 3, h, w)  # (n, 3, H, W) with n = prod(...) * t
    y = target.float().reshape(-1, 3, h, w)
    g = gaussian_window().to(x.device)

    def blur(z: torch.Tensor) -> torch.Tensor:
        # Separable Gaussian, per channel (groups=3), valid region only: (n, 3, H, W) -> (n, 3, H-10, W-10).
        z = F.conv2d(z, g.view(1, 1, -1, 1).expand(3, 1, -1, 1), groups=3)
        return F.conv2d(z, g.view(1, 1, 1, -1).expand(3, 1, 1, -1), groups=3)

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    c1 = (SSIM_K1 * data_range) ** 2
    c2 = (SSIM_K2 * data_range) ** 2
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    values = ssim_map.mean(dim=(-3, -2, -1)).reshape(lead)  # (..., t)
    return values if per_frame else values.mean(dim=-1)
