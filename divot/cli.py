"""The ``divot`` command line: one dispatch table of subcommands.

Each entry names a module in ``divot.commands`` that defines ``add_arguments(parser)`` and
``run(args) -> int``. ``main`` imports only the chosen command's module, so ``divot --help`` never loads torch,
and ``divot data shapes`` never loads diffusers or transformers.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Iterable

from divot.commands.console import err

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "data": ("divot.commands.data", "generate datasets (the synthetic shapes world; story files from episodes)"),
    "convert": ("divot.commands.convert", "convert released Divot checkpoints to this toolkit's format"),
    "tokenize": ("divot.commands.tokenize", "encode a video into Divot tokens and save them"),
    "reconstruct": ("divot.commands.reconstruct",
                    "video -> tokens -> de-tokenizer -> video, with PSNR / SSIM (one video or a folder)"),
    "cache-features": ("divot.commands.cache_features",
                       "encode every clip of a video folder / annotation file once into a token cache"),
    "export": ("divot.commands.export",
               "merge a Divot-LLM training checkpoint (LoRA) into a DivotLLM directory (plain HF LLM + projections)"),
    "demo": ("divot.commands.demo", "run the demo on the shapes world"),
    "ask": ("divot.commands.ask", "answer a question about a video"),
    "caption": ("divot.commands.caption", "caption a video"),
    "chat": ("divot.commands.chat", "talk about a video in the terminal (follow-up questions, /help)"),
    "generate": ("divot.commands.generate", "generate a video (.mp4 / .gif) from a text prompt"),
    "story": ("divot.commands.story", "tell a story: text and generated clips, saved as an HTML storyboard"),
    "eval": ("divot.commands.eval", "run an evaluation task (`divot eval --help` lists them)"),
    "ui": ("divot.commands.ui", "a web page (Gradio): chat about a video, generate videos, tell stories"),
    "serve": ("divot.commands.serve", "an OpenAI-compatible HTTP server: chat about videos, generate videos"),
}


class CommandError(Exception):
    """A user-facing error: printed as one line, exit code 2."""


def build_parser(commands: Iterable[str] | None = None) -> argparse.ArgumentParser:
    """The ``divot`` parser. ``commands``: the subcommands whose modules are imported and whose options are
    added (default: all of them); the others are listed with their help line only, enough for ``divot --help``."""
    chosen = set(COMMANDS if commands is None else commands)
    parser = argparse.ArgumentParser(prog="divot", description="Divot video tokenizer + LLM toolkit")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, (module_name, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name in chosen:
            module = importlib.import_module(module_name)
            module.add_arguments(p)
            p.set_defaults(_run=module.run)
    return parser


def chosen_command(argv: list[str]) -> str | None:
    """The subcommand ``argv`` names: its first word that is not an option (the top level takes no values)."""
    word = next((arg for arg in argv if not arg.startswith("-")), None)
    return word if word in COMMANDS else None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    command = chosen_command(argv)
    parser = build_parser([] if command is None else [command])
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    try:
        return int(args._run(args) or 0)
    except (CommandError, ValueError, FileNotFoundError, KeyError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        err(f"divot {args.command}: error: {msg}")
        return 2


if __name__ == "__main__":
    sys.exit(main())
