"""Video -> tokens: the Divot tokenizer."""

from divot.tokenizer.config import TOKENIZER_PRESETS, TokenizerConfig, tokenizer_preset
from divot.tokenizer.model import VideoTokenizer

__all__ = ["TOKENIZER_PRESETS", "TokenizerConfig", "VideoTokenizer", "tokenizer_preset"]
