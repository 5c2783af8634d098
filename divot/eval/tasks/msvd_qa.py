"""MSVD-QA (and the format family ActivityNet-QA shares), open-ended.

Two formats, detected from the files:
- Video-ChatGPT / Video-LLaVA: ``--questions test_q.json`` [{video_name, question_id, question}] and
  ``--answers test_a.json`` [{answer, type, question_id}], parallel lists (the question ids must agree);
- one list ``--questions qa.json`` [{question, video_name, answer}] (Chat-UniVi); item ids are the positions.
Videos: ``<video_name>`` + any video extension (MSVD's are .avi) in ``--videos``.
"""

from __future__ import annotations

from divot.eval.runner import EvalConfig, EvalItem, find_video, read_json

KIND = "open"
GROUP_KEY = None
VIDEO_PREFIXES: tuple[str, ...] = ("",)


def load_open_items(cfg: EvalConfig, prefixes: tuple[str, ...] = ("",)) -> list[EvalItem]:
    questions = read_json(cfg.questions, "questions file")
    if not isinstance(questions, list) or not questions:
        raise ValueError(f"{cfg.questions}: expected a non-empty list of questions")
    first = questions[0]
    if cfg.answers is not None:
        answers = read_json(cfg.answers, "answers file")
        if not isinstance(answers, list) or len(answers) != len(questions):
            raise ValueError(f"{cfg.answers}: expected a list parallel to {cfg.questions} ({len(questions)} "
                             f"records), got {len(answers) if isinstance(answers, list) else type(answers).__name__}")
        rows = []
        for i, (q, a) in enumerate(zip(questions, answers, strict=True)):
            qid, aid = q.get("question_id"), a.get("question_id")
            if qid is not None and aid is not None and qid != aid:
                raise ValueError(f"record {i}: question_id {qid} in {cfg.questions} but {aid} in {cfg.answers}")
            rows.append((str(qid if qid is not None else i), q, a.get("answer"), {"type": a.get("type")}))
    elif "answer" in first:
        rows = [(str(i), r, r.get("answer"), {}) for i, r in enumerate(questions)]
    else:
        raise ValueError(f"{cfg.questions} has no answers: give --answers (test_a.json) or a file of "
                         "[{question, video_name, answer}]")
    items = []
    for item_id, q, answer, meta in rows:
        if "video_name" not in q or "question" not in q or answer is None:
            raise ValueError(f"{cfg.questions}: record {item_id} needs video_name, question and an answer "
                             f"(has {sorted(q)})")
        name = str(q["video_name"])
        video = find_video(cfg.videos, name, prefixes)
        video_id = video.stem if video is not None else prefixes[0] + name
        items.append(EvalItem(item_id, video_id, video, str(q["question"]), None, str(answer), meta))
    return items


def load_items(cfg: EvalConfig) -> list[EvalItem]:
    return load_open_items(cfg, VIDEO_PREFIXES)
