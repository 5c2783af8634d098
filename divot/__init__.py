"""Divot: a diffusion-powered video tokenizer plugged into a language model."""

from divot.diffusion import Detokenizer
from divot.tokenizer import VideoTokenizer

__version__ = "0.1.0"
__all__ = ["Detokenizer", "VideoTokenizer", "__version__"]
