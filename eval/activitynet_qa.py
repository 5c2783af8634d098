"""``python -m eval.activitynet_qa ...``: the same as ``divot eval activitynet-qa ...`` (``--help`` lists the options)."""

import sys

from divot.commands.eval_tasks import main_for


def main(argv: list[str] | None = None) -> int:
    return main_for("activitynet-qa", argv)


if __name__ == "__main__":
    sys.exit(main())
