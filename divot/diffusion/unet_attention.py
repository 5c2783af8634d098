"""Attention parts of the 3D U-Net: spatial transformer (dual cross-attention) and temporal transformer.

Attribute names follow the reference state dict (``norm``, ``proj_in``, ``transformer_blocks.{i}``,
``attn1``/``attn2`` with ``to_q``/``to_k``/``to_v``/``to_out.0``, ``to_k_ip``/``to_v_ip``/``alpha``,
``ff.net.0.proj``/``ff.net.2``, ``norm1..3``, ``proj_out``). Attention uses
``F.scaled_dot_product_attention`` (same maths as softmax(q k^T / sqrt(dh)) v).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from divot.diffusion.unet_blocks import group_norm, zero_


class CrossAttention(nn.Module):
    """Multi-head attention; keys/values from ``context`` if given, else from ``x``.

    With ``image_cross_attention`` the context is split at ``text_context_len``: the first tokens feed
    ``to_k``/``to_v``, the rest feed ``to_k_ip``/``to_v_ip``; both branches share the queries and the
    second is added scaled by (tanh(alpha) + 1) (alpha learned, initialised to 0) when ``gate_learnable``.
    """

    def __init__(self, query_dim: int, context_dim: int | None, num_heads: int, head_dim: int,
                 image_cross_attention: bool = False, gate_learnable: bool = True, text_context_len: int = 77,
                 image_scale: float = 1.0):
        super().__init__()
        inner = num_heads * head_dim
        context_dim = context_dim or query_dim
        self.num_heads = num_heads
        self.to_q = nn.Linear(query_dim, inner, bias=False)
        self.to_k = nn.Linear(context_dim, inner, bias=False)
        self.to_v = nn.Linear(context_dim, inner, bias=False)
        self.to_out = nn.Sequential(nn.Linear(inner, query_dim), nn.Dropout(0.0))
        self.image_cross_attention = image_cross_attention
        self.text_context_len = text_context_len
        self.image_scale = image_scale
        if image_cross_attention:
            self.to_k_ip = nn.Linear(context_dim, inner, bias=False)
            self.to_v_ip = nn.Linear(context_dim, inner, bias=False)
            self.alpha = nn.Parameter(torch.tensor(0.0)) if gate_learnable else None

    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        # q: (b, n, h*dh), k/v: (b, m, h*dh)
        q, k, v = (rearrange(a, "b n (h e) -> b h n e", h=self.num_heads) for a in (q, k, v))
        out = F.scaled_dot_product_attention(q, k, v)  # (b, h, n, dh)
        return rearrange(out, "b h n e -> b n (h e)")

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        # x: (b, n, query_dim), context: (b, m, context_dim) or None (self-attention)
        q = self.to_q(x)
        if context is None:
            return self.to_out(self._attend(q, self.to_k(x), self.to_v(x)))
        text, image = context[:, : self.text_context_len], context[:, self.text_context_len:]
        out = self._attend(q, self.to_k(text), self.to_v(text))
        # Without image tokens the reference's image branch contributes exactly zero.
        if self.image_cross_attention and image.shape[1] > 0:
            out_ip = self._attend(q, self.to_k_ip(image), self.to_v_ip(image))
            if self.alpha is not None:
                out = out + self.image_scale * out_ip * (torch.tanh(self.alpha) + 1)
            else:
                out = out + self.image_scale * out_ip
        return self.to_out(out)


class GEGLU(nn.Module):
    """Linear to 2 x dim_out; first half = value, second half = gate; value * GELU(gate) (exact erf GELU)."""

    def __init__(self, dim_in: int, dim_out: int):
        super().__init__()
        self.proj = nn.Linear(dim_in, dim_out * 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        value, gate = self.proj(x).chunk(2, dim=-1)
        return value * F.gelu(gate)


class FeedForward(nn.Module):
    def __init__(self, dim: int, mult: int = 4):
        super().__init__()
        self.net = nn.Sequential(GEGLU(dim, dim * mult), nn.Dropout(0.0), nn.Linear(dim * mult, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class BasicTransformerBlock(nn.Module):
    """Pre-norm self-attention, cross-attention (self-attention if ``context_dim`` is None), GEGLU MLP."""

    def __init__(self, dim: int, num_heads: int, head_dim: int, context_dim: int | None = None,
                 image_cross_attention: bool = False, gate_learnable: bool = True, text_context_len: int = 77):
        super().__init__()
        # Registration order as the reference (attn1, ff, attn2, norms): it fixes the state_dict order.
        self.attn1 = CrossAttention(dim, None, num_heads, head_dim)
        self.ff = FeedForward(dim)
        self.attn2 = CrossAttention(dim, context_dim, num_heads, head_dim, image_cross_attention,
                                    gate_learnable, text_context_len)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.norm3 = nn.LayerNorm(dim)
        self.uses_context = context_dim is not None

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        # x: (b, n, dim)
        x = x + self.attn1(self.norm1(x))
        x = x + self.attn2(self.norm2(x), context if self.uses_context else None)
        return x + self.ff(self.norm3(x))


class SpatialTransformer(nn.Module):
    """Per-frame transformer over the h*w positions with cross-attention to the context; residual.

    x: ((b t), c, h, w), context: ((b t), m, context_dim).
    """

    def __init__(self, channels: int, num_heads: int, head_dim: int, context_dim: int, depth: int = 1,
                 use_linear: bool = True, image_cross_attention: bool = True, gate_learnable: bool = True,
                 text_context_len: int = 77):
        super().__init__()
        inner = num_heads * head_dim
        self.use_linear = use_linear
        self.norm = group_norm(channels, 1e-6)
        self.proj_in = nn.Linear(channels, inner) if use_linear else nn.Conv2d(channels, inner, 1)
        self.transformer_blocks = nn.ModuleList([
            BasicTransformerBlock(inner, num_heads, head_dim, context_dim, image_cross_attention,
                                  gate_learnable, text_context_len)
            for _ in range(depth)
        ])
        self.proj_out = zero_(nn.Linear(inner, channels) if use_linear else nn.Conv2d(inner, channels, 1))

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        height = x.shape[-2]
        x_in = x
        x = self.norm(x)
        if not self.use_linear:
            x = self.proj_in(x)
        x = rearrange(x, "n c h w -> n (h w) c")
        if self.use_linear:
            x = self.proj_in(x)
        for block in self.transformer_blocks:
            x = block(x, context)
        if self.use_linear:
            x = self.proj_out(x)
        x = rearrange(x, "n (h w) c -> n c h w", h=height)
        if not self.use_linear:
            x = self.proj_out(x)
        return x + x_in


class TemporalTransformer(nn.Module):
    """Self-attention across frames at every spatial position; residual. x: (b, c, t, h, w).

    ``use_linear`` False gives 1x1 Conv1d projections (the reference's ``init_attn``).
    """

    def __init__(self, channels: int, num_heads: int, head_dim: int, depth: int = 1, use_linear: bool = True):
        super().__init__()
        inner = num_heads * head_dim
        self.use_linear = use_linear
        self.norm = group_norm(channels, 1e-6)
        self.proj_in = nn.Linear(channels, inner) if use_linear else nn.Conv1d(channels, inner, 1)
        self.transformer_blocks = nn.ModuleList(
            [BasicTransformerBlock(inner, num_heads, head_dim) for _ in range(depth)]
        )
        self.proj_out = zero_(nn.Linear(inner, channels) if use_linear else nn.Conv1d(inner, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, _, h, w = x.shape
        x_in = x
        x = rearrange(self.norm(x), "b c t h w -> (b h w) c t")
        if not self.use_linear:
            x = self.proj_in(x)
        x = rearrange(x, "n c t -> n t c")  # n = b*h*w sequences of t frames
        if self.use_linear:
            x = self.proj_in(x)
        for block in self.transformer_blocks:
            x = block(x)
        if self.use_linear:
            x = self.proj_out(x)
            return rearrange(x, "(b h w) t c -> b c t h w", b=b, h=h, w=w) + x_in
        x = self.proj_out(rearrange(x, "n t c -> n c t"))
        return rearrange(x, "(b h w) c t -> b c t h w", b=b, h=h, w=w) + x_in
