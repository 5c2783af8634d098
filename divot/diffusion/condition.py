"""The condition resampler: tokenizer tokens (b, n, input_dim) -> U-Net context (b, num_queries, output_dim).

Same Perceiver design as the tokenizer's output stage (``divot.nn.PerceiverResampler``); in the reference it is
``image_proj_model`` (``Resampler_DC``).
"""

from __future__ import annotations

import torch

from divot.diffusion.config import ConditionResamplerConfig
from divot.hub import PretrainedMixin
from divot.nn.resampler import PerceiverResampler


class ConditionResampler(PretrainedMixin, PerceiverResampler):
    """(b, n, input_dim) tokens -> (b, num_queries, output_dim) context (LayerNorm-ed)."""

    config_class = ConditionResamplerConfig
    model_type = "divot-condition-resampler"

    def __init__(self, config: ConditionResamplerConfig):
        super().__init__(dim=config.dim, depth=config.depth, num_heads=config.num_heads, head_dim=config.head_dim,
                         num_queries=config.num_queries, input_dim=config.input_dim, output_dim=config.output_dim,
                         ff_mult=config.ff_mult)
        self.config = config

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 3 or x.shape[-1] != self.config.input_dim:
            raise ValueError(f"tokens must be (b, n, {self.config.input_dim}), got {tuple(x.shape)}")
        return super().forward(x)
