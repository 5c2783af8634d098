"""``python -m eval.msvd_qa ...``: the same as ``divot eval msvd-qa ...`` (``--help`` lists the options)."""

import sys

from divot.commands.eval_tasks import main_for


def main(argv: list[str] | None = None) -> int:
    return main_for("msvd-qa", argv)


if __name__ == "__main__":
    sys.exit(main())
