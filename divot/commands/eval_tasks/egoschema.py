"""``divot eval egoschema``: options in ``divot.commands.eval_tasks``, the task in ``divot.eval.tasks.egoschema``."""

from divot.commands.eval_tasks import add_task_arguments, run_task

TASK = "egoschema"


def add_arguments(parser) -> None:
    add_task_arguments(parser, TASK)


def run(args) -> int:
    return run_task(TASK, args)

