"""PSNR and SSIM: hand-computed values and an independent scipy SSIM (Wang et al. 2004)."""

import math

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from divot.eval.metrics import psnr, ssim


def _frames(seed: int, shape=(2, 3, 3, 24, 20)) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=g) * 2 - 1


def _ssim_scipy(x: np.ndarray, y: np.ndarray, data_range: float = 2.0) -> float:
    """SSIM of one frame (3, H, W), float64: Gaussian-weighted statistics on the valid region, channel mean."""
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    r = 5  # truncate 3.5 at sigma 1.5 -> radius int(3.5 * 1.5 + 0.5) = 5: an 11-tap window

    def blur(z):
        return gaussian_filter(z, sigma=1.5, truncate=3.5, mode="constant")[r:-r, r:-r]

    values = []
    for xc, yc in zip(x.astype(np.float64), y.astype(np.float64), strict=True):
        mx, my = blur(xc), blur(yc)
        vx, vy, cxy = blur(xc * xc) - mx**2, blur(yc * yc) - my**2, blur(xc * yc) - mx * my
        m = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
        values.append(m.mean())
    return float(np.mean(values))


def test_identical_frames():
    x = _frames(0)
    assert torch.isinf(psnr(x, x)).all() and (psnr(x, x) > 0).all()
    assert torch.allclose(ssim(x, x), torch.ones(2), atol=1e-6)


def test_psnr_constant_offset_is_hand_computed():
    target = _frames(1).clamp(-0.8, 0.8)
    pred = target + 0.1  # MSE 0.01 on every frame -> 10 log10(4 / 0.01) = 26.0206 dB
    expected = 10 * math.log10(4 / 0.01)
    out = psnr(pred, target)
    assert out.shape == (2,) and out.dtype == torch.float32
    assert torch.allclose(out, torch.full((2,), expected), atol=1e-3)
    # data_range 1 (frames in [0, 1]): 10 log10(1 / 0.01) = 20 dB
    assert torch.allclose(psnr(pred, target, data_range=1.0), torch.full((2,), 20.0), atol=1e-3)


def test_psnr_is_the_mean_over_frames():
    target = torch.zeros(1, 2, 3, 16, 16)
    pred = target.clone()
    pred[0, 0] += 0.1  # 26.02 dB
    pred[0, 1] += 0.2  # 10 log10(4 / 0.04) = 20 dB
    assert torch.allclose(psnr(pred, target, per_frame=True), torch.tensor([[26.0206, 20.0]]), atol=1e-3)
    assert torch.allclose(psnr(pred, target), torch.tensor([23.0103]), atol=1e-3)


def test_ssim_matches_scipy_reference():
    target = _frames(2)
    pred = (target + 0.3 * _frames(3)).clamp(-1, 1)  # partly correlated
    ours = ssim(pred, target, per_frame=True)  # (2, 3)
    ref = np.array([[_ssim_scipy(pred[b, t].numpy(), target[b, t].numpy()) for t in range(3)] for b in range(2)])
    assert ours.shape == (2, 3)
    np.testing.assert_allclose(ours.numpy(), ref, atol=1e-4)
    assert 0.2 < ref.mean() < 0.95  # a non-trivial value, not 0 or 1
    np.testing.assert_allclose(ssim(pred, target).numpy(), ref.mean(axis=1), atol=1e-4)


def test_ssim_on_smooth_images_and_brightness_shift():
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 32), torch.linspace(-1, 1, 32), indexing="ij")
    img = torch.stack([xx * yy, torch.sin(3 * xx), torch.cos(2 * yy)]).mul(0.8)[None, None]  # (1, 1, 3, 32, 32)
    shifted = img + 0.2
    ref = _ssim_scipy(shifted[0, 0].numpy(), img[0, 0].numpy())
    assert abs(ssim(shifted, img).item() - ref) < 1e-4
    assert ref < 0.999  # the luminance term sees the shift


@pytest.mark.parametrize("metric", [psnr, ssim])
def test_symmetric_and_input_dtype(metric):
    a, b = _frames(4), _frames(5)
    assert torch.allclose(metric(a, b), metric(b, a), atol=1e-6)
    assert torch.allclose(metric(a.double(), b.double()), metric(a, b), atol=1e-5)
    assert metric(a.double(), b.double()).dtype == torch.float32


def test_unbatched_clip_gives_a_scalar():
    a, b = _frames(6, (4, 3, 16, 16)), _frames(7, (4, 3, 16, 16))
    assert psnr(a, b).shape == () and ssim(a, b).shape == ()


@pytest.mark.parametrize("metric", [psnr, ssim])
def test_shape_errors(metric):
    x = _frames(8)
    with pytest.raises(ValueError, match="same shape"):
        metric(x, x[:, :2])
    with pytest.raises(ValueError, match=r"\(\.\.\., t, 3, H, W\)"):
        metric(x[:, :, :2], x[:, :, :2])
    with pytest.raises(ValueError, match=r"\(\.\.\., t, 3, H, W\)"):
        metric(x[0, 0], x[0, 0])
    with pytest.raises(ValueError, match="data_range"):
        metric(x, x, data_range=0)


def test_ssim_needs_the_whole_window():
    x = _frames(9, (1, 1, 3, 10, 32))
    with pytest.raises(ValueError, match="at least 11 x 11"):
        ssim(x, x)
