"""Key renaming shared by the converters: ordered (regex, replacement) rules applied to every key."""

from __future__ import annotations

import re

import torch

# The reference's Perceiver resampler (IP-Adapter layout) -> divot.nn.PerceiverResampler.
RESAMPLER_RULES: list[tuple[str, str]] = [
    (r"^latents$", "queries"),
    (r"^layers\.(\d+)\.0\.norm1\.", r"layers.\1.attn.norm_inputs."),
    (r"^layers\.(\d+)\.0\.norm2\.", r"layers.\1.attn.norm_queries."),
    (r"^layers\.(\d+)\.0\.(to_q|to_kv|to_out)\.", r"layers.\1.attn.\2."),
    (r"^layers\.(\d+)\.1\.0\.", r"layers.\1.ff.norm."),
    (r"^layers\.(\d+)\.1\.1\.", r"layers.\1.ff.fc1."),
    (r"^layers\.(\d+)\.1\.3\.", r"layers.\1.ff.fc2."),
]

# OpenCLIP-style residual blocks (nn.MultiheadAttention) -> divot.nn.TransformerBlock.
CLIP_BLOCK_RULES: list[tuple[str, str]] = [
    (r"^transformer\.resblocks\.(\d+)\.attn\.in_proj_(weight|bias)$", r"blocks.\1.attn.qkv.\2"),
    (r"^transformer\.resblocks\.(\d+)\.attn\.out_proj\.", r"blocks.\1.attn.proj."),
    (r"^transformer\.resblocks\.(\d+)\.ln_1\.", r"blocks.\1.norm1."),
    (r"^transformer\.resblocks\.(\d+)\.ln_2\.", r"blocks.\1.norm2."),
    (r"^transformer\.resblocks\.(\d+)\.mlp\.c_fc\.", r"blocks.\1.mlp.fc1."),
    (r"^transformer\.resblocks\.(\d+)\.mlp\.c_proj\.", r"blocks.\1.mlp.fc2."),
    (r"^positional_embedding$", "pos_embed"),
    (r"^ln_final\.", "norm."),
]


def rename(key: str, rules: list[tuple[str, str]]) -> str:
    for pattern, repl in rules:
        new, n = re.subn(pattern, repl, key)
        if n:
            return new
    return key


def take_prefix(state: dict[str, torch.Tensor], src: str, dst: str,
                rules: list[tuple[str, str]] | None = None) -> dict[str, torch.Tensor]:
    """Keys under ``src`` (with the prefix stripped and ``rules`` applied) re-prefixed with ``dst``."""
    out = {}
    for key, value in state.items():
        if key.startswith(src):
            out[dst + rename(key[len(src):], rules or [])] = value
    return out
