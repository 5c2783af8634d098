"""Divot: a diffusion-powered video tokenizer plugged into a language model.

The package and its subpackages name their public classes but import them only when first used (PEP 562, as
transformers does), so ``import divot`` and ``divot --help`` do not load torch, diffusers, transformers or timm.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING

__version__ = "0.1.0"
__all__ = ["Detokenizer", "Divot", "DivotLLM", "Video", "VideoTokenizer", "__version__"]


def _lazy_exports(namespace: dict, exports: dict[str, str]) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for a package (its ``globals()``) whose public names live in submodules.

    ``exports`` maps each name to the module defining it; the module is imported the first time the name is
    asked for and the value is kept in the package, so later lookups are plain attribute reads."""
    package = namespace["__name__"]

    def __getattr__(name: str) -> object:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(exports))

    return __getattr__, __dir__


__getattr__, __dir__ = _lazy_exports(globals(), {
    "Detokenizer": "divot.diffusion.detokenizer",
    "Divot": "divot.chat.model",
    "DivotLLM": "divot.llm.model",
    "Video": "divot.chat.video",
    "VideoTokenizer": "divot.tokenizer.model",
})

if TYPE_CHECKING:
    from divot.chat.model import Divot
    from divot.chat.video import Video
    from divot.diffusion.detokenizer import Detokenizer
    from divot.llm.model import DivotLLM
    from divot.tokenizer.model import VideoTokenizer
