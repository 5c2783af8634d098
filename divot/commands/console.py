"""The command line's output channel: what a command answers goes to stdout, a user error to stderr.

Diagnostics (progress, what a command is doing) go through ``logging``. A command's result (a caption, an
answer, a written path, the chat's replies) is its output, not a log record: it is written here, one line at a
time and flushed at once, so pipes and the interactive terminal see it as soon as it exists.
"""

from __future__ import annotations

import sys


def out(text: object = "") -> None:
    """Write ``text`` and a newline to stdout, flushed."""
    sys.stdout.write(f"{text}\n")
    sys.stdout.flush()


def err(text: object) -> None:
    """Write ``text`` and a newline to stderr, flushed."""
    sys.stderr.write(f"{text}\n")
    sys.stderr.flush()


def out_stream(pieces) -> str:
    """Write each text piece to stdout as it arrives (flushed), then a newline; returns the whole text."""
    text = []
    for piece in pieces:
        sys.stdout.write(piece)
        sys.stdout.flush()
        text.append(piece)
    out()
    return "".join(text)
