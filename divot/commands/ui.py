"""``divot ui --model M --port N``: a web page (Gradio) to chat about a video, generate videos and tell stories.

Needs the ``ui`` extra (``pip install 'divot[ui]'``). Serves on 127.0.0.1 by default; ``--host 0.0.0.0`` opens it
to the network and ``--share`` to the internet (a gradio.live link): anyone who reaches it can run the model.
The page is described in docs/ui.md.
"""

from __future__ import annotations

import argparse
import logging
import signal
import tempfile

from divot.commands.console import out
from divot.commands.model_options import add_model_arguments

logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to serve on (default 127.0.0.1: this machine only; 0.0.0.0: every interface)")
    parser.add_argument("--port", type=int, default=7860, help="port to serve on (default 7860)")
    parser.add_argument("--share", action="store_true",
                        help="also serve through a public gradio.live link (off by default; needs internet)")
    add_model_arguments(parser)


def run(args) -> int:
    from divot.cli import CommandError
    from divot.commands.model_options import check_model, load_model
    from divot.ui import require_gradio

    if not 1 <= args.port <= 65535:
        raise ValueError(f"--port must be in 1..65535, got {args.port}")
    check_model(args.model)
    try:
        require_gradio()
    except ImportError as err:
        raise CommandError(str(err)) from err
    model = load_model(args)
    from divot.ui.app import build_app, launch

    signal.signal(signal.SIGTERM, _interrupt)  # a service manager's stop: shut down as Ctrl-C does
    with tempfile.TemporaryDirectory(prefix="divot-ui-") as work_dir:
        app = build_app(model, work_dir, model_name=args.model)
        out(f"Divot UI on http://{args.host}:{args.port} (Ctrl-C stops it)")
        try:
            launch(app, work_dir, host=args.host, port=args.port, share=args.share, block=True)
        except KeyboardInterrupt:
            pass
        finally:
            app.close()
    return 0


def _interrupt(signum, frame):
    raise KeyboardInterrupt
