"""``divot ui``: a Gradio web page over the public ``Divot`` API (chat about a video, generate a video, tell a
story). Needs the ``ui`` extra: ``pip install 'divot[ui]'``.

Modules: ``handlers`` (plain functions the page's callbacks call: every check and every model call, testable
without a browser), ``examples`` (the example shapes clips written at start-up), ``storyboard`` (the story
tab's HTML), ``app`` (the ``gr.Blocks`` page and its stable ``elem_id``s; imports gradio).

This package's ``__init__`` imports neither gradio nor torch.
"""

from __future__ import annotations

import importlib.util

UI_EXTRA_HINT = "pip install 'divot[ui]'"


def is_gradio_available() -> bool:
    """Whether gradio can be imported (the ``ui`` extra is installed)."""
    return importlib.util.find_spec("gradio") is not None


def require_gradio() -> None:
    """Raise one ``ImportError`` naming the extra when gradio is missing."""
    if not is_gradio_available():
        raise ImportError(f"the web UI needs gradio, which is not installed: {UI_EXTRA_HINT}")
