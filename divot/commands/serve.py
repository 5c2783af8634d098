"""``divot serve --model M --port 8000``: an OpenAI-compatible HTTP server (chat completions about videos, video
generation); needs the ``serve`` extra (``pip install 'divot[serve]'``). Endpoints and examples: docs/serve.md.

The server reads a ``file://`` video only under an ``--allowed-dir`` (none given: no local file at all) and
downloads ``http(s)://`` videos only with ``--allow-remote-urls``. It has no authentication: keep it on
127.0.0.1 (the default) or behind a proxy that checks who calls.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from divot.commands.model_options import add_model_arguments

logger = logging.getLogger(__name__)

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0: every interface)")
    parser.add_argument("--port", type=int, default=8000, help="TCP port (default 8000)")
    parser.add_argument("--allowed-dir", action="append", type=Path, default=[], metavar="DIR",
                        help="a folder whose videos requests may name as file:// URLs (repeatable; default: none, "
                             "every file URL is refused)")
    parser.add_argument("--allow-remote-urls", action="store_true",
                        help="download http(s):// video URLs (default: refused)")
    parser.add_argument("--max-clips", type=int, default=None,
                        help="the longest video a request may send, in 2-second clips, and the most clips a generated "
                             "video may have (default 20)")
    parser.add_argument("--max-video-mb", type=float, default=100.0,
                        help="the largest uploaded (data URL) or downloaded video in MiB (default 100)")
    parser.add_argument("--served-model-name", default=None,
                        help="the model id clients send and /v1/models lists (default: the bundled name or the "
                             "model directory's name)")
    add_model_arguments(parser)


def run(args) -> int:
    from divot.serve import require_serve_extra

    require_serve_extra()
    from divot.commands.model_options import check_model, load_model
    from divot.constants import MAX_CLIPS
    from divot.serve.app import create_app
    from divot.serve.videos import VideoPolicy

    if not 0 <= args.port <= 65535:
        raise ValueError(f"--port must be in [0, 65535], got {args.port}")
    if not args.max_video_mb > 0:
        raise ValueError(f"--max-video-mb must be > 0, got {args.max_video_mb}")
    max_clips = MAX_CLIPS if args.max_clips is None else args.max_clips
    policy = VideoPolicy(tuple(args.allowed_dir), args.allow_remote_urls, int(args.max_video_mb * 2**20),
                         max_clips)  # checked before the model loads
    root = check_model(args.model)
    name = args.served_model_name or (root.resolve().name if Path(args.model).is_dir() else args.model)
    model = load_model(args)
    app = create_app(model, model_name=name, allowed_dirs=policy.allowed_dirs,
                     allow_remote_urls=policy.allow_remote_urls, max_clips=policy.max_clips,
                     max_video_bytes=policy.max_bytes)
    if args.host not in LOOPBACK:
        logger.warning("listening on %s: the server has no authentication, anyone who reaches it can use it",
                       args.host)
    logger.info("serving %s on http://%s:%s/v1 (videos from %s; remote URLs %s)", name, args.host, args.port,
                ", ".join(map(str, policy.allowed_dirs)) or "no local folder",
                "allowed" if policy.allow_remote_urls else "refused")
    import uvicorn

    uvicorn.run(app, host=args.host, port=args.port, log_config=None)  # logging as the CLI configured it
    return 0
