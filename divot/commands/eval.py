"""``divot eval TASK [OPTIONS]``: run an evaluation task from the ``TASKS`` registry.

Each entry maps a task name to (module, one-line help); the module defines ``add_arguments(parser)`` and
``run(args) -> int``, like the subcommands in ``divot.cli.COMMANDS``. ``divot eval TASK --help`` shows a task's
options. The benchmark tasks live in ``divot.eval.tasks``; their options (the same as ``python -m eval.TASK``)
in ``divot.commands.eval_tasks``.
"""

from __future__ import annotations

import argparse
import importlib

# task name -> (module, one-line help).
TASKS: dict[str, tuple[str, str]] = {
    "egoschema": ("divot.commands.eval_tasks.egoschema",
                  "EgoSchema five-way multiple choice (subset accuracy + full-set submission)"),
    "msvd-qa": ("divot.commands.eval_tasks.msvd_qa",
                "MSVD-QA open-ended (exact / contains match, optional LLM judge)"),
    "activitynet-qa": ("divot.commands.eval_tasks.activitynet_qa",
                       "ActivityNet-QA open-ended (exact / contains match, optional LLM judge)"),
    "nextqa": ("divot.commands.eval_tasks.nextqa", "NExT-QA multiple choice (csv), accuracy per question type"),
}


def task_list() -> str:
    if not TASKS:
        return "tasks: no tasks (no evaluation tasks are registered in this version of divot)"
    width = max(len(name) for name in TASKS)
    return "tasks:\n" + "\n".join(f"  {name:<{width}}  {help_text}" for name, (_, help_text) in sorted(TASKS.items()))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = task_list() + "\n\n`divot eval TASK --help` shows a task's options."
    parser.add_argument("task", metavar="TASK", nargs="?", help="the evaluation task (listed below)")
    parser.add_argument("task_args", nargs=argparse.REMAINDER, metavar="...", help="the task's options")


def run(args) -> int:
    if args.task is None:
        raise ValueError("no evaluation task given; " + task_list().replace("\n", " "))
    if args.task not in TASKS:
        known = ", ".join(sorted(TASKS)) if TASKS else "no tasks are registered yet"
        raise ValueError(f"unknown evaluation task {args.task!r} ({known})")
    module_name, help_text = TASKS[args.task]
    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser(prog=f"divot eval {args.task}", description=help_text)
    module.add_arguments(parser)
    return int(module.run(parser.parse_args(args.task_args)) or 0)
