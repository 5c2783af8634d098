"""Perceiver resampler: a fixed set of learned queries cross-attends to a variable set of inputs.

Used twice with the same design: the tokenizer's output stage (125 tokens -> 64 queries) and the
de-tokenizer's condition resampler (64 tokens -> 125 queries). Keys and values come from the
concatenation of the inputs and the queries; softmax runs in float32.
"""

from __future__ import annotations

import math

import torch
from einops import rearrange
from torch import nn


class ResamplerAttention(nn.Module):
    def __init__(self, dim: int, num_heads: int, head_dim: int, eps: float = 1e-5):
        super().__init__()
        inner = num_heads * head_dim
        self.num_heads = num_heads
        self.head_dim = head_dim
        self.norm_inputs = nn.LayerNorm(dim, eps=eps)
        self.norm_queries = nn.LayerNorm(dim, eps=eps)
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(dim, inner * 2, bias=False)
        self.to_out = nn.Linear(inner, dim, bias=False)

    def forward(self, x: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
        # x: (b, n, d) inputs, queries: (b, q, d)
        x = self.norm_inputs(x)
        queries = self.norm_queries(queries)
        q = self.to_q(queries)
        k, v = self.to_kv(torch.cat([x, queries], dim=1)).chunk(2, dim=-1)  # (b, n + q, inner) each
        q, k, v = (rearrange(t, "b s (h e) -> b h s e", h=self.num_heads) for t in (q, k, v))
        scale = 1.0 / math.sqrt(math.sqrt(self.head_dim))  # split between q and k, as the reference does
        weight = (q * scale) @ (k * scale).transpose(-2, -1)  # (b, h, q, n + q)
        weight = torch.softmax(weight.float(), dim=-1).to(weight.dtype)
        out = rearrange(weight @ v, "b h q e -> b q (h e)")
        return self.to_out(out)


class ResamplerFeedForward(nn.Module):
    def __init__(self, dim: int, mult: int = 4, eps: float = 1e-5):
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=eps)
        self.fc1 = nn.Linear(dim, dim * mult, bias=False)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(dim * mult, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(self.norm(x))))


class ResamplerLayer(nn.Module):
    def __init__(self, dim: int, num_heads: int, head_dim: int, ff_mult: int, eps: float):
        super().__init__()
        self.attn = ResamplerAttention(dim, num_heads, head_dim, eps)
        self.ff = ResamplerFeedForward(dim, ff_mult, eps)

    def forward(self, x: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
        queries = queries + self.attn(x, queries)
        return queries + self.ff(queries)


class PerceiverResampler(nn.Module):
    """(b, n, input_dim) -> (b, num_queries, output_dim).

    Layout: Linear(input_dim -> dim) on the inputs, ``depth`` layers of [attention, feed-forward] on the
    queries (each with a residual), Linear(dim -> output_dim), LayerNorm(output_dim).
    """

    def __init__(self, dim: int, depth: int, num_heads: int, head_dim: int, num_queries: int,
                 input_dim: int, output_dim: int, ff_mult: int = 4, eps: float = 1e-5):
        super().__init__()
        self.queries = nn.Parameter(torch.randn(1, num_queries, dim) / dim**0.5)
        self.proj_in = nn.Linear(input_dim, dim)
        self.layers = nn.ModuleList(
            [ResamplerLayer(dim, num_heads, head_dim, ff_mult, eps) for _ in range(depth)]
        )
        self.proj_out = nn.Linear(dim, output_dim)
        self.norm_out = nn.LayerNorm(output_dim, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        queries = self.queries.expand(x.shape[0], -1, -1)  # (b, q, d)
        x = self.proj_in(x)  # (b, n, d)
        for layer in self.layers:
            queries = layer(x, queries)
        return self.norm_out(self.proj_out(queries))  # (b, q, output_dim)
