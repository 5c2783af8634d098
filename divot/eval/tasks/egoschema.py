"""EgoSchema: five-way multiple choice on egocentric clips (DESIGN section 8).

Inputs: ``questions.json`` (the official schema: a list of {q_uid, question, "option 0" .. "option 4"}; other
keys such as google_drive_id are ignored), optionally ``subset_answers.json`` ({q_uid: answer index}, the
public 500-question subset), and a folder of ``<q_uid>.mp4``. Questions without an answer are predicted (for
the submission) but not scored. Outputs besides the prediction log and summary: ``submission.json``
({q_uid: int}, for the validation server) and ``submission.csv`` (``q_uid,answer``) over the answered
questions; an unparseable generated answer is written as -1 (wrong, never a guessed letter); questions whose
video was missing are absent from both and listed in the summary.
"""

from __future__ import annotations

import csv
import json
import logging

from divot.eval.runner import ANSWERED, EvalConfig, EvalItem, find_video, read_json
from divot.hub import atomic_write_text

logger = logging.getLogger(__name__)

KIND = "mc"
NUM_OPTIONS = 5
GROUP_KEY = None


def load_items(cfg: EvalConfig) -> list[EvalItem]:
    data = read_json(cfg.questions, "EgoSchema questions file")
    if not isinstance(data, list):
        raise ValueError(f"{cfg.questions}: expected a list of questions ({{q_uid, question, option 0..4}}), "
                         f"got {type(data).__name__}")
    answers = None
    if cfg.answers is not None:
        raw = read_json(cfg.answers, "EgoSchema answers file")
        if not isinstance(raw, dict):
            raise ValueError(f"{cfg.answers}: expected {{q_uid: answer index}}, got {type(raw).__name__}")
        answers = {str(k): int(v) for k, v in raw.items()}
    items, seen = [], set()
    for i, r in enumerate(data):
        keys = ["q_uid", "question"] + [f"option {j}" for j in range(NUM_OPTIONS)]
        missing = [k for k in keys if k not in r]
        if missing:
            raise ValueError(f"{cfg.questions}: question {i} lacks {missing} (has {sorted(r)})")
        uid = str(r["q_uid"])
        if uid in seen:
            raise ValueError(f"{cfg.questions}: q_uid {uid} appears twice")
        seen.add(uid)
        answer = answers.get(uid) if answers is not None else None
        if answer is not None and not 0 <= answer < NUM_OPTIONS:
            raise ValueError(f"{cfg.answers}: answer of {uid} is {answer}, expected 0..{NUM_OPTIONS - 1}")
        items.append(EvalItem(uid, uid, find_video(cfg.videos, uid), str(r["question"]),
                              [str(r[f"option {j}"]) for j in range(NUM_OPTIONS)], answer))
    if answers is not None:
        if answers and not set(answers) & seen:
            raise ValueError(f"{cfg.answers}: none of its {len(answers)} q_uids is in {cfg.questions} "
                             "(an answers file of another question set?)")
        unknown = set(answers) - seen
        if unknown:
            logger.info("%s: %d answered q_uid(s) are not among the questions", cfg.answers, len(unknown))
    return items


def finish(cfg: EvalConfig, records: list[dict], summary: dict) -> None:
    """Write the submission files (JSON and CSV) and name them in the summary."""
    answered = [r for r in records if r["status"] == ANSWERED]
    submission = {r["id"]: (-1 if r["pred"] is None else int(r["pred"])) for r in answered}
    json_path, csv_path = cfg.out / "submission.json", cfg.out / "submission.csv"
    atomic_write_text(json_path, json.dumps(submission, indent=1) + "\n")
    with open(csv_path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["q_uid", "answer"])
        writer.writerows(submission.items())
    summary["submission"] = {"json": str(json_path), "csv": str(csv_path), "questions": len(submission),
                             "unparseable_written_as": -1}
