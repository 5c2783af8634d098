"""``divot chat VIDEO --model M``: an interactive conversation about a video in the terminal.

Type a question after the ``> `` prompt and read the answer; follow-up questions see the earlier turns.
Commands: ``/help``, ``/reset`` (forget the turns), ``/video PATH`` (switch video; starts afresh), ``/history``,
``/quit`` (or end of input, Ctrl-D). Reads stdin line by line, so it can also be driven by a pipe.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from divot.commands.console import err, out, out_stream
from divot.commands.model_options import add_comprehension_arguments

HELP = """commands:
  /help         this help
  /reset        forget the conversation so far (same video)
  /video PATH   talk about another video (starts a new conversation)
  /history      show the turns so far
  /quit         leave (also /exit or Ctrl-D)
anything else is a question about the video"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("video", type=Path, help="video file to talk about (switch later with /video PATH)")
    add_comprehension_arguments(parser)


def run(args) -> int:
    from divot.commands.model_options import check_model, check_video, decoding_options, load_model

    check_video(args.video)
    check_model(args.model)
    options = decoding_options(args)
    model = load_model(args)
    chat = model.chat(**options)
    chat.set_video(args.video, max_clips=args.max_clips, progress=True)
    if sys.stdin.isatty():
        try:
            import readline  # noqa: F401  (line editing and history for input())
        except ImportError:  # not on every platform
            pass
    out(f"Talking about {args.video} ({chat.clips.shape[0]} clip(s)). /help lists the commands, /quit leaves.")
    return conversation_loop(chat, args.max_clips)


def conversation_loop(chat, max_clips: int | None = None) -> int:
    """The read-answer loop on stdin / stdout until ``/quit`` or end of input; returns the exit code (0)."""
    while True:
        try:
            line = input("> ")
        except (EOFError, KeyboardInterrupt):
            out()
            return 0
        line = line.strip()
        if not line:
            continue
        if not line.startswith("/"):
            try:
                out_stream(chat.ask(line, stream=True))  # printed as the tokens arrive
            except ValueError as err:
                _error(err)
            except KeyboardInterrupt:  # Ctrl-C while answering: drop this answer (the stream stops), keep the rest
                out("\n(interrupted)")
            continue
        command, _, argument = line.partition(" ")
        argument = argument.strip()
        if command in ("/quit", "/exit"):
            return 0
        if command == "/help":
            out(HELP)
        elif command == "/reset":
            chat.reset()
            out("(conversation cleared)")
        elif command == "/history":
            for i, (question, answer) in enumerate(chat.history, 1):
                out(f"{i}. Q: {question}\n   A: {answer}")
            if not chat.history:
                out("(no turns yet)")
        elif command == "/video":
            if not argument:
                _error("usage: /video PATH")
                continue
            try:
                chat.set_video(Path(argument).expanduser(), max_clips=max_clips)
            except (FileNotFoundError, ValueError) as err:
                _error(err)
                continue
            out(f"(now talking about {argument}: {chat.clips.shape[0]} clip(s); conversation cleared)")
        else:
            _error(f"unknown command {command!r}; /help lists the commands")


def _error(message) -> None:
    err(f"error: {message}")
