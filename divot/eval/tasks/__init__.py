"""Benchmark tasks (DESIGN section 8). Each module reads its annotation files into ``EvalItem``s
(``load_items(cfg)``) and says how it is answered (``KIND``: "mc" or "open"); ``divot.eval.evaluate`` runs
any of them. ``TASKS`` maps the task name to its module.

| task | files | answer |
|---|---|---|
| ``egoschema`` | questions.json ({q_uid, question, option 0..4}), subset_answers.json ({q_uid: index}), ``<q_uid>.mp4`` | ll / gen, submission JSON + CSV |
| ``nextqa`` | NExT-QA multiple-choice csv (video_name, question, a0..a4, answer_number, question_id, question_type), ``<video_name>.mp4`` | ll / gen, accuracy per question type |
| ``msvd-qa`` | test_q.json + test_a.json (parallel lists), or [{question, video_name, answer}]; ``<video_name>.avi`` | open-ended |
| ``activitynet-qa`` | the same formats; video ``v_<video_name>.mp4`` | open-ended |
"""

TASKS = {
    "egoschema": "divot.eval.tasks.egoschema",
    "nextqa": "divot.eval.tasks.nextqa",
    "msvd-qa": "divot.eval.tasks.msvd_qa",
    "activitynet-qa": "divot.eval.tasks.activitynet_qa",
}


def task_module(name: str):
    import importlib

    if name not in TASKS:
        raise ValueError(f"unknown evaluation task {name!r} (known: {', '.join(sorted(TASKS))})")
    return importlib.import_module(TASKS[name])
