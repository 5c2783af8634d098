"""Tokenizer configuration and its named presets (``paper``, ``tiny``)."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

from divot.constants import FRAME_SIZE, NUM_SPARSE_FRAMES


@dataclass
class FrameEncoderConfig:
    """A CLIP-style ViT (timm ``VisionTransformer``, pre-norm, class token) read before its final norm."""

    image_size: int = 224
    patch_size: int = 14
    width: int = 1280
    depth: int = 32
    num_heads: int = 16
    mlp_ratio: float = 4.0
    eps: float = 1e-5
    trainable: bool = False  # the paper keeps it frozen; the tiny preset may train it

    @property
    def grid_size(self) -> int:
        return self.image_size // self.patch_size


@dataclass
class TemporalEncoderConfig:
    """Per patch position, a transformer over the frames (QuickGELU, LayerNorm eps 1e-6)."""

    width: int = 768
    depth: int = 6
    num_heads: int = 12
    mlp_ratio: float = 4.0
    zero_init: bool = True  # reference init: a fresh module outputs zeros


@dataclass
class SpatialTemporalConfig:
    """Pool each frame to pool_size^2 tokens, then full attention over all frames' tokens."""

    dim: int = 1024
    depth: int = 4
    num_heads: int = 8
    mlp_ratio: float = 4.0
    pool_size: int = 5
    # Init scale of the spatial and temporal position tables. The Perceiver resampler after this stage is
    # blind to token order, so where and when the object is reaches the tokens only through these tables: at
    # 0.02 (the usual ViT init) a freshly initialised tokenizer's tokens carry colour but not position, and
    # training does not recover it in CPU minutes. The tiny preset uses 1.0; loaded weights override either.
    pos_init_std: float = 0.02


@dataclass
class ResamplerConfig:
    num_queries: int = 64
    depth: int = 6
    num_heads: int = 16
    head_dim: int = 64
    output_dim: int = 256
    ff_mult: int = 4


@dataclass
class TokenizerConfig:
    num_frames: int = NUM_SPARSE_FRAMES
    frame_size: int = FRAME_SIZE  # videos are cropped to this before the frame encoder resizes them
    frame_encoder: FrameEncoderConfig = field(default_factory=FrameEncoderConfig)
    temporal: TemporalEncoderConfig = field(default_factory=TemporalEncoderConfig)
    spatial_temporal: SpatialTemporalConfig = field(default_factory=SpatialTemporalConfig)
    resampler: ResamplerConfig = field(default_factory=ResamplerConfig)
    # Tiny-preset training aid (DESIGN section 9): "batch" normalises the output tokens across the batch
    # (non-affine, running statistics at eval). "none" keeps the released structure.
    output_norm: str = "none"

    def __post_init__(self):
        if self.output_norm not in ("none", "batch"):
            raise ValueError(f"output_norm must be 'none' or 'batch', got {self.output_norm!r}")
        if self.num_frames < 1:
            raise ValueError(f"num_frames must be >= 1, got {self.num_frames}")

    @property
    def num_tokens(self) -> int:
        return self.resampler.num_queries

    @property
    def token_dim(self) -> int:
        return self.resampler.output_dim


TOKENIZER_PRESETS: dict[str, TokenizerConfig] = {
    # OpenCLIP ViT-H/14 + the released Divot tokenizer: 64 x 256 tokens per clip.
    "paper": TokenizerConfig(),
    # Same structure, small widths: tests and the shapes world (32-64 px clips).
    "tiny": TokenizerConfig(
        frame_size=32,
        frame_encoder=FrameEncoderConfig(image_size=32, patch_size=4, width=64, depth=2, num_heads=4,
                                         trainable=True),
        temporal=TemporalEncoderConfig(width=64, depth=2, num_heads=4, zero_init=False),
        spatial_temporal=SpatialTemporalConfig(dim=96, depth=2, num_heads=4, pool_size=4, pos_init_std=1.0),
        resampler=ResamplerConfig(num_queries=16, depth=2, num_heads=4, head_dim=24, output_dim=32),
        output_norm="batch",
    ),
}


def tokenizer_preset(name: str) -> TokenizerConfig:
    if name not in TOKENIZER_PRESETS:
        raise ValueError(f"unknown tokenizer preset {name!r}; choose from {sorted(TOKENIZER_PRESETS)}")
    return copy.deepcopy(TOKENIZER_PRESETS[name])
