"""Subcommands of the ``divot`` CLI (see ``divot.cli.COMMANDS``)."""
