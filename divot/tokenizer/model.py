"""The Divot video tokenizer: a 2-second clip (5 sparse frames) -> num_queries x token_dim tokens.

    clip (b, t, 3, H, W) in [-1, 1]
      -> frame encoder (ViT, no final norm, class token dropped)       (b t, g*g, width)
      -> temporal encoder over t at every patch position               (b g*g, t, dim)
      -> adaptive average pool of each frame's g x g grid to p x p     (b, t*p*p, dim), LayerNorm
      -> spatial-temporal transformer (+ spatial and temporal tables)  (b, t*p*p, dim)
      -> Perceiver resampler                                           (b, q, token_dim)
"""

from __future__ import annotations

import logging
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn
from tqdm.auto import tqdm

from divot.hub import PretrainedMixin
from divot.nn.resampler import PerceiverResampler
from divot.nn.transformer import TransformerBlock
from divot.tokenizer.config import TokenizerConfig, tokenizer_preset
from divot.tokenizer.frame_encoder import FrameEncoder
from divot.tokenizer.temporal_encoder import TemporalEncoder

logger = logging.getLogger(__name__)


class SpatialTemporalTransformer(nn.Module):
    """(b, t*p*p, dim) + spatial (p*p) and temporal (t) position tables -> ViT blocks -> LayerNorm."""

    def __init__(self, dim: int, depth: int, num_heads: int, mlp_ratio: float, num_frames: int, pool_size: int,
                 pos_init_std: float = 0.02):
        super().__init__()
        self.pos_embed_spatial = nn.Parameter(torch.randn(pool_size * pool_size, dim) * pos_init_std)
        self.pos_embed_temporal = nn.Parameter(torch.randn(num_frames, dim) * pos_init_std)
        self.blocks = nn.ModuleList(
            [TransformerBlock(dim, num_heads, mlp_ratio, act="gelu", eps=1e-6) for _ in range(depth)]
        )
        self.norm = nn.LayerNorm(dim, eps=1e-5)

    def forward(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        x = rearrange(x, "b (t n) d -> b t n d", t=num_frames)
        x = x + self.pos_embed_spatial[None, None] + self.pos_embed_temporal[None, :num_frames, None]
        x = rearrange(x, "b t n d -> b (t n) d")
        for block in self.blocks:
            x = block(x)
        return self.norm(x)


class VideoTokenizer(PretrainedMixin, nn.Module):
    """Clips (b, t, 3, H, W) in [-1, 1] -> tokens (b, num_queries, token_dim).

    Example::

        tok = VideoTokenizer.from_preset("tiny")
        tokens = tok(torch.zeros(2, 5, 3, 32, 32))      # (2, 16, 32)
        tokens = tok.encode_video("clip.mp4")            # (clips, 16, 32)
    """

    config_class = TokenizerConfig
    model_type = "divot_video_tokenizer"

    def __init__(self, config: TokenizerConfig):
        super().__init__()
        self.config = config
        fe, tc, st, rc = config.frame_encoder, config.temporal, config.spatial_temporal, config.resampler
        self.frame_encoder = FrameEncoder(fe)
        self.temporal_encoder = TemporalEncoder(tc, fe.width, st.dim, config.num_frames)
        self.spatial_norm = nn.LayerNorm(st.dim, eps=1e-6)
        self.spatial_temporal = SpatialTemporalTransformer(
            st.dim, st.depth, st.num_heads, st.mlp_ratio, config.num_frames, st.pool_size, st.pos_init_std
        )
        self.resampler = PerceiverResampler(
            dim=st.dim, depth=rc.depth, num_heads=rc.num_heads, head_dim=rc.head_dim,
            num_queries=rc.num_queries, input_dim=st.dim, output_dim=rc.output_dim, ff_mult=rc.ff_mult,
        )
        self.output_norm = (nn.BatchNorm1d(rc.output_dim, affine=False) if config.output_norm == "batch"
                            else nn.Identity())
        # state-dict key -> the weights fingerprint entry of its saved value, for weights held cast (see
        # ``cast_frozen_vit``); empty for a tokenizer that holds what it saved
        self.fingerprint_as_saved: dict[str, bytes] = {}

    @classmethod
    def from_preset(cls, name: str) -> VideoTokenizer:
        """Build a randomly initialised tokenizer from a named preset (``paper`` or ``tiny``)."""
        return cls(tokenizer_preset(name))

    @staticmethod
    def presets() -> list[str]:
        from divot.tokenizer.config import TOKENIZER_PRESETS

        return list(TOKENIZER_PRESETS)

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        if clips.ndim != 5 or clips.shape[2] != 3 or clips.shape[1] != cfg.num_frames:
            raise ValueError(
                f"VideoTokenizer expects clips (b, {cfg.num_frames}, 3, H, W) in [-1, 1], got {tuple(clips.shape)}"
            )
        b, t = clips.shape[:2]
        g, p = cfg.frame_encoder.grid_size, cfg.spatial_temporal.pool_size
        x = self.frame_encoder(rearrange(clips, "b t c h w -> (b t) c h w"))  # (b t, g*g, width)
        x = rearrange(x, "(b t) n c -> (b n) t c", b=b)
        x = self.temporal_encoder(x)  # (b g*g, t, dim)
        x = rearrange(x, "(b gh gw) t d -> (b t) d gh gw", b=b, gh=g, gw=g)
        x = F.adaptive_avg_pool2d(x, p)  # (b t, dim, p, p)
        x = rearrange(x, "(b t) d ph pw -> b (t ph pw) d", b=b)
        x = self.spatial_norm(x)
        x = self.spatial_temporal(x, t)  # (b, t*p*p, dim)
        tokens = self.resampler(x)  # (b, q, token_dim)
        if isinstance(self.output_norm, nn.BatchNorm1d):
            tokens = self.output_norm(tokens.flatten(0, 1).float()).view_as(tokens).to(tokens.dtype)
        return tokens

    @torch.no_grad()
    def encode(self, clips: torch.Tensor, batch_size: int = 8, precision: str = "auto",
               progress: bool = False) -> torch.Tensor:
        """Tokenize many clips (n, t, 3, H, W) in batches -> (n, q, token_dim) float32.

        ``precision``: "fp32", "bf16" / "fp16" (autocast) or "auto": bf16 autocast where the device runs it fast,
        and always for a tokenizer holding low-precision weights (``from_pretrained(dtype=...)``).
        """
        device = next(self.parameters()).device
        ctx = autocast_context(device, self.resolve_precision(device, precision))
        out = []
        for start in tqdm(range(0, clips.shape[0], batch_size), desc="tokenize", disable=not progress,
                          leave=False):
            batch = clips[start : start + batch_size].to(device)
            with ctx:
                out.append(self(batch).float().cpu())
        return torch.cat(out) if out else clips.new_zeros(0, self.config.num_tokens, self.config.token_dim)

    def resolve_precision(self, device: torch.device, precision: str = "auto") -> str:
        """The precision ``encode`` runs at: "auto" picks bf16 where bf16 is fast, the weights' own low precision
        where the tokenizer holds some; fp32 on low-precision weights is an error."""
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        low = self.low_precision_dtype()
        if precision == "auto":
            if low is not None:
                return "fp16" if low == torch.float16 else "bf16"
            return "bf16" if bf16_is_fast(device) else "fp32"
        if precision == "fp32" and low is not None:
            raise ValueError(f"precision 'fp32' needs float32 weights, but this tokenizer holds {low} weights: "
                             "load it with dtype=torch.float32")
        return precision

    def low_precision_dtype(self) -> torch.dtype | None:
        """bf16 / fp16 if some weights are held in it (e.g. the frozen ViT's matrices), else None."""
        for param in self.parameters():
            if param.dtype in (torch.bfloat16, torch.float16):
                return param.dtype
        return None

    # -- loading ------------------------------------------------------------------------------------------
    def frozen_vit_matrices(self) -> list[str]:
        """State-dict keys of the frozen ViT's matrix products (Linear and Conv weights and biases): what bf16
        autocast would cast on every call. Empty when the frame encoder trains."""
        if self.config.frame_encoder.trainable:
            return []
        keys = []
        for name, module in self.frame_encoder.named_modules():
            if isinstance(module, (nn.Linear, nn.Conv2d)):
                keys += [f"frame_encoder.{name}.{p}" for p, v in module.named_parameters(recurse=False)]
        return keys

    def load_dtype_rule(self, dtype, device=None):
        """``dtype``: None (as saved), a torch dtype (every floating weight), or "auto": the frozen ViT's matrices
        in bf16 where bf16 is fast on ``device`` (bit-identical to bf16 autocast over float32 weights, without
        the cast on every call and with half the ViT's memory), everything else as saved."""
        if dtype != "auto":  # the output BatchNorm's statistics stay as saved: it normalises in float32
            rule = super().load_dtype_rule(dtype, device)
            return lambda key, stored: stored if key.startswith("output_norm.") else rule(key, stored)
        if not bf16_is_fast(torch.device(device) if device is not None else torch.device("cpu")):
            return super().load_dtype_rule(None, device)
        matrices = set(self.frozen_vit_matrices())
        self._cast_on_read = matrices
        return lambda key, stored: torch.bfloat16 if key in matrices and stored.is_floating_point else stored

    def weight_read_hook(self):
        """While loading with dtype "auto": remember the saved values of the weights that are cast."""
        return self.on_weight_read if getattr(self, "_cast_on_read", None) else None

    def on_weight_read(self, key: str, tensor: torch.Tensor) -> None:
        """While loading: remember the saved values' fingerprint of each weight that is cast, so that the
        tokenizer keeps the identity of its file (``divot.data.token_cache.tokenizer_identity``)."""
        if key in getattr(self, "_cast_on_read", ()):
            from divot.data.token_cache.format import fingerprint_entry

            self.fingerprint_as_saved[key] = fingerprint_entry(key, tensor)

    def cast_frozen_vit(self, dtype: torch.dtype = torch.bfloat16) -> VideoTokenizer:
        """Hold the frozen ViT's matrices in ``dtype`` (what ``from_pretrained(dtype="auto")`` does on devices
        where bf16 is fast); ``encode`` then runs under autocast. Returns self."""
        keys = set(self.frozen_vit_matrices())
        if not keys:
            raise ValueError("the frame encoder is trainable: its weights stay in the training precision")
        from divot.data.token_cache.format import fingerprint_entry

        for name, param in self.named_parameters():
            if name in keys and param.dtype != dtype:
                self.fingerprint_as_saved.setdefault(name, fingerprint_entry(name, param))
                param.data = param.data.to(dtype)
        return self

    def encode_video(self, path: str | Path, max_clips: int | None = None, batch_size: int = 8,
                     precision: str = "auto", progress: bool = False) -> torch.Tensor:
        """Decode ``path``, sample its clips (the one policy of DESIGN section 2) -> (clips, q, token_dim)."""
        from divot.constants import MAX_CLIPS
        from divot.data.loading import load_sparse_clips

        clips = load_sparse_clips(path, size=self.config.frame_size,
                                  max_clips=MAX_CLIPS if max_clips is None else max_clips)
        was_training = self.training
        self.eval()
        try:
            return self.encode(clips, batch_size=batch_size, precision=precision, progress=progress)
        finally:
            self.train(was_training)


PRECISIONS = ("fp32", "bf16", "fp16", "auto")


def autocast_context(device: torch.device, precision: str):
    """An autocast context for ``precision`` in ("fp32", "bf16", "fp16", "auto") on ``device``."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "auto":
        precision = "bf16" if bf16_is_fast(device) else "fp32"
    if precision == "fp32":
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


def bf16_is_fast(device: torch.device) -> bool:
    """True where bfloat16 matrix products have hardware support (CUDA Ampere+, CPUs with AVX512-BF16/AMX)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        try:
            return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):
            return False
    return False
