"""The de-tokenizer's 3D U-Net (DynamiCrafter structure), predicting v for (b, c, t, h, w) latents.

Layout, layer by layer: ``DETOKENIZER.md`` sections 1-12. State-dict keys are the reference's (``time_embed``,
``fps_embedding``, ``input_blocks``, ``init_attn``, ``middle_block``, ``output_blocks``, ``out``) except
``temporal_conv`` (reference: ``temopral_conv``).
"""

from __future__ import annotations

import logging

import torch
from einops import rearrange
from torch import nn
from torch.utils.checkpoint import checkpoint

from divot.diffusion.config import UNetConfig
from divot.diffusion.schedule import timestep_embedding
from divot.diffusion.unet_attention import SpatialTransformer, TemporalTransformer
from divot.diffusion.unet_blocks import ContextGrid, Downsample, ResBlock, Upsample, group_norm, zero_
from divot.hub import PretrainedMixin

logger = logging.getLogger(__name__)


class TimestepEmbedSequential(nn.Sequential):
    """One U-Net block; children keyed 0, 1, ... each get the inputs their kind needs.

    ResBlock: (h, emb, b); spatial transformer: (h, context) per frame; temporal transformer: h as
    (b, c, t, h, w); anything else (stem conv, Down/Upsample): h.
    """

    def forward(self, x: torch.Tensor, emb: torch.Tensor, context: torch.Tensor, batch_size: int) -> torch.Tensor:
        # x: ((b t), c, h, w), emb: ((b t), 4 mc), context: ((b t), m, context_dim)
        for layer in self:
            if isinstance(layer, ResBlock):
                x = layer(x, emb, batch_size)
            elif isinstance(layer, SpatialTransformer):
                x = layer(x, context)
            elif isinstance(layer, TemporalTransformer):
                x = rearrange(x, "(b t) c h w -> b c t h w", b=batch_size)
                x = rearrange(layer(x), "b c t h w -> (b t) c h w")
            else:
                x = layer(x)
        return x


def _embedding_mlp(channels: int, emb_dim: int, zero_last: bool = False) -> nn.Sequential:
    last = nn.Linear(emb_dim, emb_dim)
    return nn.Sequential(nn.Linear(channels, emb_dim), nn.SiLU(), zero_(last) if zero_last else last)


class VideoUNet(PretrainedMixin, nn.Module):
    """v-prediction 3D U-Net: (b, c, t, h, w) noisy latents, (b,) timesteps, (b, m, d) context -> (b, c, t, h, w)."""

    config_class = UNetConfig
    model_type = "divot-unet"

    def __init__(self, config: UNetConfig):
        super().__init__()
        self.config = config
        c = config
        mc, emb_dim = c.model_channels, c.time_embed_dim
        self.gradient_checkpointing = c.gradient_checkpointing
        self.time_embed = _embedding_mlp(mc, emb_dim)
        self.fps_embedding = _embedding_mlp(mc, emb_dim, zero_last=True) if c.fs_condition else None
        self.context_embedding = _embedding_mlp(c.context_dim, emb_dim) if c.pooled_context else None

        def res(cin: int, cout: int) -> ResBlock:
            return ResBlock(cin, cout, emb_dim, c.dropout, c.temporal_conv, c.temporal_conv_dropout)

        def attention(ch: int) -> list[nn.Module]:
            heads = c.num_heads(ch)
            out: list[nn.Module] = [SpatialTransformer(ch, heads, c.head_dim, c.context_dim, c.transformer_depth,
                                                       c.use_linear, c.image_cross_attention,
                                                       c.image_gate_learnable, c.text_context_len)]
            if c.temporal_attention:
                out.append(TemporalTransformer(ch, heads, c.head_dim, c.transformer_depth, c.use_linear))
            return out

        self.input_blocks = nn.ModuleList(
            [TimestepEmbedSequential(nn.Conv2d(c.in_channels, mc, 3, padding=1))]
        )
        if c.position_grid:
            frames, height, width = c.position_grid
            # (t, mc, 1, 1) + (1, mc, h, w), added to the stem output of every frame
            self.pos_temporal = nn.Parameter(torch.randn(frames, mc, 1, 1) * 0.1)
            self.pos_spatial = nn.Parameter(torch.randn(1, mc, height, width) * 0.1)
        self.context_grid = None
        if c.context_grid:
            tokens, grid, channels = c.context_grid
            self.context_grid = ContextGrid(tokens, c.context_dim, c.num_frames, grid, channels, mc)
        if c.init_attention:
            # Built without use_linear in the reference, hence Conv1d projections; 8 heads of head_dim.
            self.init_attn = TimestepEmbedSequential(
                TemporalTransformer(mc, c.init_attention_heads, c.head_dim, c.transformer_depth, use_linear=False)
            )
        else:
            self.init_attn = None
        skip_channels, ch, ds = [mc], mc, 1
        for level, mult in enumerate(c.channel_mult):
            for _ in range(c.num_res_blocks):
                layers: list[nn.Module] = [res(ch, mult * mc)]
                ch = mult * mc
                if ds in c.attention_resolutions:
                    layers += attention(ch)
                self.input_blocks.append(TimestepEmbedSequential(*layers))
                skip_channels.append(ch)
            if level != c.num_levels - 1:
                self.input_blocks.append(TimestepEmbedSequential(Downsample(ch)))
                skip_channels.append(ch)
                ds *= 2
        self.middle_block = TimestepEmbedSequential(res(ch, ch), *attention(ch), res(ch, ch))
        self.output_blocks = nn.ModuleList()
        for level, mult in reversed(list(enumerate(c.channel_mult))):
            for i in range(c.num_res_blocks + 1):
                layers = [res(ch + skip_channels.pop(), mult * mc)]
                ch = mult * mc
                if ds in c.attention_resolutions:
                    layers += attention(ch)
                if level != 0 and i == c.num_res_blocks:
                    layers.append(Upsample(ch))
                    ds //= 2
                self.output_blocks.append(TimestepEmbedSequential(*layers))
        self.out = nn.Sequential(group_norm(ch, 1e-5), nn.SiLU(), zero_(nn.Conv2d(mc, c.out_channels, 3, padding=1)))

    def set_gradient_checkpointing(self, enabled: bool = True) -> None:
        """Recompute each block's activations in the backward pass (only while training with grad)."""
        self.gradient_checkpointing = enabled

    def _run(self, block: nn.Module, h: torch.Tensor, emb: torch.Tensor, context: torch.Tensor,
             batch_size: int) -> torch.Tensor:
        if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
            return checkpoint(block, h, emb, context, batch_size, use_reentrant=False)
        return block(h, emb, context, batch_size)

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor | int, context: torch.Tensor,
                fs: torch.Tensor | int | None = None) -> torch.Tensor:
        """x: (b, in_channels, t, h, w); timesteps: (b,) (or a scalar), 0..999; context: (b, m, context_dim);
        fs: (b,) frame stride (default ``config.default_fs``). Returns (b, out_channels, t, h, w).

        The context is shared by all frames of a clip. (The reference special-cases m == 77 + 16 t, a
        per-frame image-token layout Divot never produces; not reproduced.)
        """
        c = self.config
        if x.ndim != 5 or x.shape[1] != c.in_channels:
            raise ValueError(f"x must be (b, {c.in_channels}, t, h, w), got {tuple(x.shape)}")
        b, _, t, height, width = x.shape
        if height % c.downsample_factor or width % c.downsample_factor:
            raise ValueError(f"latent height and width must be multiples of {c.downsample_factor}, "
                             f"got {height}x{width}")
        if context.ndim != 3 or context.shape[0] != b or context.shape[2] != c.context_dim:
            raise ValueError(f"context must be ({b}, m, {c.context_dim}), got {tuple(context.shape)}")
        timesteps = self._per_sample(timesteps, b, x.device, "timesteps")
        emb = self.time_embed(timestep_embedding(timesteps, c.model_channels).to(x.dtype))  # (b, 4 mc)
        if self.fps_embedding is not None:
            fs = self._per_sample(c.default_fs if fs is None else fs, b, x.device, "fs")
            emb = emb + self.fps_embedding(timestep_embedding(fs, c.model_channels).to(x.dtype))
        if self.context_embedding is not None:
            emb = emb + self.context_embedding(context.mean(dim=1).to(emb.dtype))  # (b, 4 mc)
        emb = emb.repeat_interleave(t, dim=0)  # ((b t), 4 mc)
        grid = self.context_grid(context, t, height, width) if self.context_grid is not None else None
        context = context.repeat_interleave(t, dim=0)  # ((b t), m, context_dim)
        h = rearrange(x, "b c t h w -> (b t) c h w")
        skips = []
        for i, block in enumerate(self.input_blocks):
            h = self._run(block, h, emb, context, b)
            if i == 0 and c.position_grid:
                h = h + self._positions(b, t, height, width)
            if i == 0 and grid is not None:
                h = h + grid  # ((b t), mc, h, w)
            if i == 0 and self.init_attn is not None:
                h = self._run(self.init_attn, h, emb, context, b)
            skips.append(h)
        h = self._run(self.middle_block, h, emb, context, b)
        for block in self.output_blocks:
            h = self._run(block, torch.cat([h, skips.pop()], dim=1), emb, context, b)
        y = self.out(h)  # ((b t), out_channels, h, w)
        return rearrange(y, "(b t) c h w -> b c t h w", b=b)

    def _positions(self, batch: int, frames: int, height: int, width: int) -> torch.Tensor:
        """((b t), mc, h, w) learned position tables for clips of ``frames`` frames (at most the table's)."""
        max_frames, table_h, table_w = self.config.position_grid
        if frames > max_frames or (height, width) != (table_h, table_w):
            raise ValueError(f"this U-Net's position tables cover {max_frames} frames of {table_h}x{table_w} "
                             f"latents, got {frames} frames of {height}x{width}")
        pos = self.pos_temporal[:frames] + self.pos_spatial  # (t, mc, h, w)
        return pos.repeat(batch, 1, 1, 1)  # ((b t), mc, h, w): t runs fastest

    @staticmethod
    def _per_sample(value: torch.Tensor | int, batch: int, device: torch.device, name: str) -> torch.Tensor:
        value = torch.as_tensor(value, device=device)
        if value.ndim == 0:
            value = value.expand(batch)
        if value.shape != (batch,):
            raise ValueError(f"{name} must be a scalar or have shape ({batch},), got {tuple(value.shape)}")
        return value
