"""``divot serve``: an OpenAI-compatible HTTP server (FastAPI + uvicorn, the ``serve`` extra:
``pip install 'divot[serve]'``) for chat completions about videos and for video generation (docs/serve.md).

    from divot import Divot
    from divot.serve import create_app
    app = create_app(Divot.from_pretrained("shapes-tiny"), model_name="shapes-tiny", allowed_dirs=["videos"])
    # uvicorn.run(app, host="127.0.0.1", port=8000)

Modules: ``app`` (``create_app``, the routes), ``protocol`` (request / response bodies), ``messages`` (OpenAI
messages -> video, history, question), ``videos`` (``VideoPolicy``: which video URLs are read), ``generation``
(prompt, decoding, token counts), ``errors`` (OpenAI-style errors). Names are imported on first use.
"""

from typing import TYPE_CHECKING

from divot import _lazy_exports

__all__ = ["APIError", "VideoPolicy", "create_app", "require_serve_extra"]

_lazy_getattr, __dir__ = _lazy_exports(globals(), {
    "APIError": "divot.serve.errors",
    "VideoPolicy": "divot.serve.videos",
    "create_app": "divot.serve.app",
})


def require_serve_extra() -> None:
    """Raise one clear ``ImportError`` naming the extra when the server's libraries are not installed."""
    import importlib.util

    missing = [name for name in ("fastapi", "uvicorn") if importlib.util.find_spec(name) is None]
    if missing:
        raise ImportError(f"divot serve needs {' and '.join(missing)}: pip install 'divot[serve]'")


def __getattr__(name: str):
    if name == "create_app":
        require_serve_extra()
    return _lazy_getattr(name)

if TYPE_CHECKING:
    from divot.serve.app import create_app
    from divot.serve.errors import APIError
    from divot.serve.videos import VideoPolicy
