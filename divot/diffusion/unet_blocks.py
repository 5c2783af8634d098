"""Convolutional parts of the 3D U-Net: ResBlock (+ temporal convolution), Downsample, Upsample.

Frames are folded into the batch for every 2D op: (b t) c h w, frame index fastest. Attribute names follow the
reference state dict (``in_layers.0``, ``emb_layers.1``, ``out_layers.3``, ``skip_connection``, ``op``,
``conv``), except ``temporal_conv`` which the reference spells ``temopral_conv`` (the converter renames it).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn


class GroupNorm32(nn.GroupNorm):
    """GroupNorm computed in float32 whatever the input / weight dtype, cast back to the input dtype."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight.float() if self.weight is not None else None
        bias = self.bias.float() if self.bias is not None else None
        return F.group_norm(x.float(), self.num_groups, weight, bias, self.eps).to(x.dtype)


def group_norm(channels: int, eps: float) -> GroupNorm32:
    return GroupNorm32(32, channels, eps=eps)


def zero_(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class TemporalConvBlock(nn.Module):
    """Four [GroupNorm -> SiLU -> (Dropout) -> Conv3d (3,1,1)] stages over (b, c, t, h, w), residual.

    GroupNorm statistics span all frames of a clip; time is zero-padded at both ends. The last conv is
    zero-initialised so a fresh block is the identity.
    """

    def __init__(self, channels: int, dropout: float = 0.1):
        super().__init__()

        def conv() -> nn.Conv3d:
            return nn.Conv3d(channels, channels, (3, 1, 1), padding=(1, 0, 0))

        self.conv1 = nn.Sequential(group_norm(channels, 1e-5), nn.SiLU(), conv())
        self.conv2 = nn.Sequential(group_norm(channels, 1e-5), nn.SiLU(), nn.Dropout(dropout), conv())
        self.conv3 = nn.Sequential(group_norm(channels, 1e-5), nn.SiLU(), nn.Dropout(dropout), conv())
        self.conv4 = nn.Sequential(group_norm(channels, 1e-5), nn.SiLU(), nn.Dropout(dropout), zero_(conv()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (b, c, t, h, w)
        return x + self.conv4(self.conv3(self.conv2(self.conv1(x))))


class ResBlock(nn.Module):
    """GN-SiLU-conv, + Linear(emb), GN-SiLU-dropout-conv, + skip (1x1 conv if widths differ), then temporal conv."""

    def __init__(self, in_channels: int, out_channels: int, emb_dim: int, dropout: float = 0.0,
                 temporal_conv: bool = True, temporal_conv_dropout: float = 0.1):
        super().__init__()
        self.in_layers = nn.Sequential(group_norm(in_channels, 1e-5), nn.SiLU(),
                                       nn.Conv2d(in_channels, out_channels, 3, padding=1))
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_dim, out_channels))
        self.out_layers = nn.Sequential(group_norm(out_channels, 1e-5), nn.SiLU(), nn.Dropout(dropout),
                                        zero_(nn.Conv2d(out_channels, out_channels, 3, padding=1)))
        if in_channels == out_channels:
            self.skip_connection = nn.Identity()
        else:
            self.skip_connection = nn.Conv2d(in_channels, out_channels, 1)
        self.temporal_conv = TemporalConvBlock(out_channels, temporal_conv_dropout) if temporal_conv else None

    def forward(self, x: torch.Tensor, emb: torch.Tensor, batch_size: int) -> torch.Tensor:
        # x: ((b t), c, h, w), emb: ((b t), emb_dim)
        h = self.in_layers(x)
        h = h + self.emb_layers(emb)[:, :, None, None].to(h.dtype)
        h = self.out_layers(h)
        h = self.skip_connection(x) + h
        if self.temporal_conv is not None:
            h = rearrange(h, "(b t) c h w -> b c t h w", b=batch_size)
            h = self.temporal_conv(h)
            h = rearrange(h, "b c t h w -> (b t) c h w")
        return h


class Downsample(nn.Module):
    """Stride-2 3x3 conv, per frame."""

    def __init__(self, channels: int):
        super().__init__()
        self.op = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class Upsample(nn.Module):
    """Nearest-neighbour x2 then a 3x3 conv, per frame."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))



class ContextGrid(nn.Module):
    """Every context token -> a per-frame spatial feature map, added to the stem output (a tiny-preset aid).

    (b, m, d) context -> per-token Linear d -> rank, flattened (b, m * rank) -> Linear -> (b, t, channels, g, g)
    -> nearest upsampling to the latent size -> 1x1 conv to the stem width (zero-initialised, so a fresh
    U-Net is unchanged). A direct, easily learned route from what the tokens say to where and when to draw
    it; cross-attention alone did not learn position in CPU minutes (DESIGN section 9).
    """

    def __init__(self, num_tokens: int, context_dim: int, num_frames: int, grid: int, channels: int,
                 out_channels: int, rank: int = 8):
        super().__init__()
        self.num_tokens, self.num_frames, self.grid, self.channels = num_tokens, num_frames, grid, channels
        self.reduce = nn.Linear(context_dim, rank)
        self.to_grid = nn.Linear(num_tokens * rank, num_frames * channels * grid * grid)
        self.proj = zero_(nn.Conv2d(channels, out_channels, 1))

    def layout(self, context: torch.Tensor, frames: int) -> torch.Tensor:
        """context (b, m, d) -> the coarse maps (b, frames, channels, grid, grid), before upsampling."""
        b, m, _ = context.shape
        if m != self.num_tokens or frames > self.num_frames:
            raise ValueError(f"this U-Net's context grid takes {self.num_tokens} context tokens and at most "
                             f"{self.num_frames} frames, got {m} tokens and {frames} frames")
        g = self.to_grid(self.reduce(context).flatten(1))  # (b, T * c * g * g)
        return g.view(b, self.num_frames, self.channels, self.grid, self.grid)[:, :frames]

    def forward(self, context: torch.Tensor, frames: int, height: int, width: int) -> torch.Tensor:
        """context (b, m, d) -> ((b t), out_channels, height, width) for clips of ``frames`` frames."""
        g = self.layout(context, frames).flatten(0, 1)  # ((b t), c, g, g)
        g = nn.functional.interpolate(g, size=(height, width), mode="nearest")  # ((b t), c, h, w)
        return self.proj(g)
