"""NExT-QA multiple choice: the csv of the validation split (video_name, question, a0..a4, answer_number,
question_id, question_type, ...), videos ``<video_name>.mp4``. Answered like EgoSchema (``ll`` / ``gen``);
the summary adds accuracy per question type (CW, CH, TN, TC, TP, DC, DL, DO) and per family (C causal,
T temporal, D descriptive, the first letter)."""

from __future__ import annotations

import csv

from divot.eval.runner import EvalConfig, EvalItem, find_video

KIND = "mc"
NUM_OPTIONS = 5
GROUP_KEY = "question_type"
REQUIRED = ("video_name", "question", "answer_number", *(f"a{j}" for j in range(NUM_OPTIONS)))


def load_items(cfg: EvalConfig) -> list[EvalItem]:
    with open(cfg.questions, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"{cfg.questions}: no rows")
    missing = [k for k in REQUIRED if k not in rows[0]]
    if missing:
        raise ValueError(f"{cfg.questions}: NExT-QA csv lacks columns {missing} (has {sorted(rows[0])})")
    items, seen = [], set()
    for i, r in enumerate(rows):
        item_id = r.get("question_id") or f"{r['video_name']}_{i}"
        if item_id in seen:
            raise ValueError(f"{cfg.questions}: question id {item_id} appears twice")
        seen.add(item_id)
        answer = int(r["answer_number"])
        if not 0 <= answer < NUM_OPTIONS:
            raise ValueError(f"{cfg.questions}: row {i + 2} has answer_number {answer}, expected 0..4")
        qtype = r.get("question_type") or "unknown"
        items.append(EvalItem(item_id, r["video_name"], find_video(cfg.videos, r["video_name"]), r["question"],
                              [r[f"a{j}"] for j in range(NUM_OPTIONS)], answer,
                              {"question_type": qtype, "question_family": qtype[:1]}))
    return items


def finish(cfg: EvalConfig, records: list[dict], summary: dict) -> None:
    families: dict[str, list[int]] = {}
    for r in records:
        if r["status"] == "answered":
            families.setdefault(r["question_family"], []).append(int(r["pred"] == r["answer"]))
    summary["accuracy_by_question_family"] = {k: sum(v) / len(v) for k, v in sorted(families.items())}
