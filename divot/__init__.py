"""Divot: a diffusion-powered video tokenizer plugged into a language model."""

from divot.diffusion import Detokenizer
from divot.tokenizer import VideoTokenizer

__version__ = "0.1.0"
__all__ = ["Detokenizer", "Divot", "DivotLLM", "Video", "VideoTokenizer", "__version__"]


def __getattr__(name: str):
    # DivotLLM pulls in transformers' model classes (seconds), Divot / Video the chat API: imported on first use.
    if name == "DivotLLM":
        from divot.llm import DivotLLM

        return DivotLLM
    if name in ("Divot", "Video"):
        import divot.chat

        return getattr(divot.chat, name)
    raise AttributeError(f"module 'divot' has no attribute {name!r}")
