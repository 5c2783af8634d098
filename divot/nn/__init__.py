"""Building blocks shared by two or more models."""

from divot.nn.resampler import PerceiverResampler
from divot.nn.transformer import Mlp, QuickGELU, TransformerBlock

__all__ = ["Mlp", "PerceiverResampler", "QuickGELU", "TransformerBlock"]
