"""Video -> tokens: the Divot tokenizer.

Names are imported on first use (``divot._lazy_exports``): the config and presets need neither torch nor timm.
"""

from typing import TYPE_CHECKING

from divot import _lazy_exports

__all__ = ["TOKENIZER_PRESETS", "TokenizerConfig", "VideoTokenizer", "tokenizer_preset"]

__getattr__, __dir__ = _lazy_exports(globals(), {
    "TOKENIZER_PRESETS": "divot.tokenizer.config",
    "TokenizerConfig": "divot.tokenizer.config",
    "tokenizer_preset": "divot.tokenizer.config",
    "VideoTokenizer": "divot.tokenizer.model",
})

if TYPE_CHECKING:
    from divot.tokenizer.config import TOKENIZER_PRESETS, TokenizerConfig, tokenizer_preset
    from divot.tokenizer.model import VideoTokenizer
