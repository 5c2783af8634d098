"""Temporal encoder: per patch position, a transformer over the clip's frames."""

from __future__ import annotations

import torch
from torch import nn

from divot.nn.transformer import TransformerBlock
from divot.tokenizer.config import TemporalEncoderConfig


class TemporalEncoder(nn.Module):
    """(m, t, input_dim) -> (m, t, output_dim), m = batch x patch positions.

    Linear in, + learned frame positions, pre-LN blocks (QuickGELU, eps 1e-6), LayerNorm, Linear out.
    No residual around the module.
    """

    def __init__(self, config: TemporalEncoderConfig, input_dim: int, output_dim: int, num_frames: int):
        super().__init__()
        w = config.width
        self.input_proj = nn.Linear(input_dim, w)
        self.pos_embed = nn.Parameter(torch.randn(num_frames, w) * 0.01)
        self.blocks = nn.ModuleList(
            [TransformerBlock(w, config.num_heads, config.mlp_ratio, act="quick_gelu", eps=1e-6)
             for _ in range(config.depth)]
        )
        self.norm = nn.LayerNorm(w, eps=1e-6)
        self.output_proj = nn.Linear(w, output_dim)
        if config.zero_init:
            self.zero_init()

    @torch.no_grad()
    def zero_init(self) -> None:
        """The reference init: identity input projection on the first channels, zeroed residual branches,
        zeroed positions and output, so a fresh module outputs zeros."""
        w, c = self.input_proj.weight.shape
        self.input_proj.weight.zero_()
        self.input_proj.weight[:, : min(w, c)] = torch.eye(w, min(w, c))
        self.input_proj.bias.zero_()
        self.pos_embed.zero_()
        for block in self.blocks:
            for linear in (block.attn.proj, block.mlp.fc2):
                linear.weight.zero_()
                linear.bias.zero_()
        self.output_proj.weight.zero_()
        self.output_proj.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = x.shape[1]
        if t > self.pos_embed.shape[0]:
            raise ValueError(f"TemporalEncoder built for {self.pos_embed.shape[0]} frames, got {t}")
        x = self.input_proj(x) + self.pos_embed[:t]
        for block in self.blocks:
            x = block(x)
        return self.output_proj(self.norm(x))
