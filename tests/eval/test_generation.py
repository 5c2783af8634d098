"""CLIPSIM and FVD with pluggable networks; the Fréchet distance against a direct scipy computation."""

import numpy as np
import pytest
import torch
from scipy import linalg

from divot.eval.generation import (
    RandomVideoFeatureNet,
    clip_similarity,
    frechet_distance,
    fvd,
    gaussian_stats,
    video_features,
)


def _videos(n, seed, shift=0.0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 4, 3, 16, 16, generator=g) * 2 - 1 + shift).clamp(-1, 1)  # (n, t, 3, H, W)


def test_frechet_distance_matches_a_direct_scipy_computation():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(40, 6)), rng.normal(loc=0.5, scale=1.3, size=(50, 6))
    mu1, s1 = a.mean(0), np.cov(a, rowvar=False)
    mu2, s2 = b.mean(0), np.cov(b, rowvar=False)
    direct = np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * np.real(linalg.sqrtm(s1 @ s2)))
    assert frechet_distance(*gaussian_stats(a), *gaussian_stats(b)) == pytest.approx(direct, rel=1e-9)
    # 1-D Gaussians: (m1 - m2)^2 + (s1 - s2)^2 for standard deviations s1, s2
    assert frechet_distance(np.array([1.0]), np.array([[4.0]]), np.array([3.0]), np.array([[1.0]])) == pytest.approx(5.0)


def test_fvd_of_a_set_with_itself_is_zero_and_grows_with_a_shift():
    net = RandomVideoFeatureNet(dim=8, seed=0)
    real = _videos(24, 0)
    assert abs(fvd(real, real, net)) < 1e-4
    assert fvd(real, _videos(24, 1, shift=0.5), net) > fvd(real, _videos(24, 2), net) > 0


def test_the_random_feature_net_is_deterministic_and_checks_shapes():
    x = _videos(3, 0)
    assert torch.equal(video_features(x, RandomVideoFeatureNet(seed=1)), video_features(x, RandomVideoFeatureNet(seed=1)))
    assert video_features(x, RandomVideoFeatureNet(dim=5), batch_size=2).shape == (3, 5)
    with pytest.raises(ValueError, match=r"\(b, t, 3, H, W\)"):
        video_features(torch.zeros(3, 3, 16, 16), RandomVideoFeatureNet())
    with pytest.raises(ValueError, match="n >= 2"):
        gaussian_stats(np.zeros((1, 4)))


class StubEmbedder:
    """Image embedding = mean colour per channel; text embedding = a fixed colour per word."""

    colours = {"red": [1.0, 0.0, 0.0], "green": [0.0, 1.0, 0.0], "blue": [0.0, 0.0, 1.0]}

    def embed_images(self, frames):
        return (frames + 1).mean(dim=(2, 3))  # (n, 3)

    def embed_texts(self, texts):
        return torch.tensor([self.colours[t.split()[-1]] for t in texts])


def test_clipsim_with_a_stub_embedder():
    red = -torch.ones(1, 4, 3, 8, 8)
    red[:, :, 0] = 1.0  # red frames
    assert clip_similarity(red, ["a video of red"], StubEmbedder()) == pytest.approx(1.0)
    assert clip_similarity(red, ["a video of blue"], StubEmbedder()) == pytest.approx(0.0)
    both = torch.cat([red, red])
    per = clip_similarity(both, ["red", "green"], StubEmbedder(), per_video=True)
    assert per.tolist() == pytest.approx([1.0, 0.0])
    with pytest.raises(ValueError, match="2 videos but 1 prompts"):
        clip_similarity(both, ["red"], StubEmbedder())
