"""``python -m eval.nextqa ...``: the same as ``divot eval nextqa ...`` (``--help`` lists the options)."""

import sys

from divot.commands.eval_tasks import main_for


def main(argv: list[str] | None = None) -> int:
    return main_for("nextqa", argv)


if __name__ == "__main__":
    sys.exit(main())
