"""Text-to-video generation metrics: CLIP similarity (CLIPSIM) and Fréchet video distance (FVD), both with
pluggable networks (DESIGN section 8: Divot reports CLIPSIM 0.2938 and FVD 301.4 on MSR-VTT prompts).

- CLIPSIM: the mean over videos of the mean over frames of the cosine similarity between the frame's image
  embedding and the prompt's text embedding (raw cosine, not x100). The embedder is anything with
  ``embed_images(frames (n, 3, H, W) float in [-1, 1]) -> (n, e)`` and ``embed_texts(list[str]) -> (n, e)``;
  ``TransformersCLIPEmbedder.from_pretrained(path)`` wraps a local ``transformers`` CLIP directory.
- FVD: the Fréchet distance between Gaussians fitted to the features of real and generated videos,
  ``|mu_r - mu_g|^2 + Tr(S_r + S_g - 2 (S_r S_g)^(1/2))`` with ``scipy.linalg.sqrtm`` (float64; the tiny
  imaginary part sqrtm can return is dropped). The feature network is a ``VideoFeatureNet``: videos
  (b, t, 3, H, W) float in [-1, 1] -> features (b, f). ``TorchScriptI3D`` loads the I3D detector used by
  common FVD code (a TorchScript file taking (b, 3, t, 224, 224) in [-1, 1]); ``RandomVideoFeatureNet`` is a
  small random 3D conv net for tests. FVD values are only comparable with the same network, frame count and
  resolution: record them with the result.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from scipy import linalg


class ImageTextEmbedder(Protocol):
    def embed_images(self, frames: torch.Tensor) -> torch.Tensor: ...  # (n, 3, H, W) -> (n, e)

    def embed_texts(self, texts: list[str]) -> torch.Tensor: ...  # -> (n, e)


class VideoFeatureNet(Protocol):
    def __call__(self, videos: torch.Tensor) -> torch.Tensor: ...  # (b, t, 3, H, W) -> (b, f)


def _check_videos(videos: torch.Tensor, name: str) -> None:
    if not isinstance(videos, torch.Tensor) or videos.ndim != 5 or videos.shape[2] != 3:
        shape = tuple(videos.shape) if isinstance(videos, torch.Tensor) else type(videos).__name__
        raise ValueError(f"{name}: expected videos (b, t, 3, H, W) float in [-1, 1], got {shape}")


@torch.no_grad()
def clip_similarity(videos: torch.Tensor, prompts: list[str], embedder: ImageTextEmbedder,
                    per_video: bool = False) -> float | torch.Tensor:
    """CLIPSIM of ``videos`` (b, t, 3, H, W) in [-1, 1] with their ``prompts`` (b strings): the mean cosine
    similarity (or the (b,) per-video values with ``per_video``)."""
    _check_videos(videos, "clip_similarity")
    b, t = videos.shape[:2]
    if len(prompts) != b:
        raise ValueError(f"clip_similarity: {b} videos but {len(prompts)} prompts")
    image = F.normalize(embedder.embed_images(videos.flatten(0, 1)).float(), dim=-1)  # (b*t, e)
    text = F.normalize(embedder.embed_texts(list(prompts)).float(), dim=-1)  # (b, e)
    sims = (image.view(b, t, -1) * text[:, None]).sum(-1).mean(1)  # (b,)
    return sims.cpu() if per_video else float(sims.mean())


def gaussian_stats(features: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Mean (f,) and covariance (f, f) of features (n, f), float64 (unbiased covariance; n >= 2)."""
    x = features.detach().cpu().double().numpy() if isinstance(features, torch.Tensor) else np.asarray(features, np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"expected features (n >= 2, f), got shape {x.shape}")
    return x.mean(0), np.cov(x, rowvar=False)


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray,
                     eps: float = 1e-6) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2). When the product of the covariances is
    singular, ``eps`` is added to both diagonals (as in the reference FID code)."""
    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    sigma1, sigma2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2).astype(np.float64)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (mu1.size, mu1.size):
        raise ValueError(f"mismatched statistics: mu {mu1.shape} / {mu2.shape}, sigma {sigma1.shape} / "
                         f"{sigma2.shape}")
    diff = mu1 - mu2
    covmean = linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    covmean = np.real(covmean)
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


@torch.no_grad()
def video_features(videos: torch.Tensor, net: VideoFeatureNet, batch_size: int = 8) -> torch.Tensor:
    """Features (b, f) float32 of videos (b, t, 3, H, W), computed ``batch_size`` videos at a time."""
    _check_videos(videos, "video_features")
    out = [net(videos[i : i + batch_size]).float().cpu() for i in range(0, videos.shape[0], batch_size)]
    return torch.cat(out)


def fvd(real: torch.Tensor, generated: torch.Tensor, net: VideoFeatureNet, batch_size: int = 8) -> float:
    """FVD between real and generated videos (each (n, t, 3, H, W) in [-1, 1], n >= 2) under ``net``."""
    mu_r, sigma_r = gaussian_stats(video_features(real, net, batch_size))
    mu_g, sigma_g = gaussian_stats(video_features(generated, net, batch_size))
    return frechet_distance(mu_r, sigma_r, mu_g, sigma_g)


class RandomVideoFeatureNet(nn.Module):
    """A small random 3D conv net (for tests and plumbing): (b, t, 3, H, W) -> (b, dim) after global
    average pooling. Deterministic for a given ``seed``."""

    def __init__(self, dim: int = 16, width: int = 8, seed: int = 0):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.net = nn.Sequential(nn.Conv3d(3, width, 3, stride=(1, 2, 2), padding=1), nn.GELU(),
                                 nn.Conv3d(width, dim, 3, stride=2, padding=1), nn.GELU())
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=gen) * (0.3 if p.ndim > 1 else 0.1))
        self.eval()

    @torch.no_grad()
    def forward(self, videos: torch.Tensor) -> torch.Tensor:
        x = videos.float().permute(0, 2, 1, 3, 4)  # (b, 3, t, H, W)
        return self.net(x).mean(dim=(2, 3, 4))  # (b, dim)


class TorchScriptI3D(nn.Module):
    """The I3D feature network of common FVD code, from a local TorchScript file (e.g. ``i3d_torchscript.pt``).

    Videos (b, t, 3, H, W) in [-1, 1] are resized to 224 x 224 (trilinear over space only) and passed as
    (b, 3, t, 224, 224) with ``rescale=False, resize=False, return_features=True`` -> (b, 400) features."""

    def __init__(self, path: str | Path, device=None, size: int = 224):
        super().__init__()
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"I3D TorchScript file {path} does not exist")
        self.model = torch.jit.load(str(path), map_location=device or "cpu").eval()
        self.size, self.path = size, path

    @torch.no_grad()
    def forward(self, videos: torch.Tensor) -> torch.Tensor:
        b, t = videos.shape[:2]
        x = F.interpolate(videos.float().flatten(0, 1), size=(self.size, self.size), mode="bilinear",
                          align_corners=False)  # (b*t, 3, s, s)
        x = x.view(b, t, 3, self.size, self.size).permute(0, 2, 1, 3, 4)  # (b, 3, t, s, s)
        return self.model(x, rescale=False, resize=False, return_features=True)


class TransformersCLIPEmbedder:
    """A local ``transformers`` CLIP directory (CLIPModel + its processor) as an ``ImageTextEmbedder``."""

    def __init__(self, model, processor, device=None):
        self.model, self.processor = model.eval(), processor
        self.device = device or next(model.parameters()).device

    @classmethod
    def from_pretrained(cls, path: str | Path, device=None) -> TransformersCLIPEmbedder:
        from transformers import CLIPModel, CLIPProcessor

        if not Path(path).is_dir():
            raise FileNotFoundError(f"CLIP model directory {path} does not exist")
        model = CLIPModel.from_pretrained(path)
        return cls(model.to(device) if device is not None else model, CLIPProcessor.from_pretrained(path), device)

    @torch.no_grad()
    def embed_images(self, frames: torch.Tensor) -> torch.Tensor:
        pixels = ((frames.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)  # (n, 3, H, W)
        inputs = self.processor(images=list(pixels), return_tensors="pt").to(self.device)
        return _projected(self.model.get_image_features(**inputs))

    @torch.no_grad()
    def embed_texts(self, texts: list[str]) -> torch.Tensor:
        inputs = self.processor(text=texts, return_tensors="pt", padding=True, truncation=True).to(self.device)
        return _projected(self.model.get_text_features(**inputs))


def _projected(out) -> torch.Tensor:
    """transformers 5 returns an output whose ``pooler_output`` is the projected embedding; 4.x a tensor."""
    return out if isinstance(out, torch.Tensor) else out.pooler_output
