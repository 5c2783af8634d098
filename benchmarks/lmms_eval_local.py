"""The two Python steps of ``benchmarks/lmms_eval_local.sh`` (run with the lmms-eval venv's python).

    python benchmarks/lmms_eval_local.py prepare --shapes DIR --out DIR/shapes_egoschema.jsonl
    python benchmarks/lmms_eval_local.py compare --divot-out DIR --lmms-out DIR --result JSON [...]

- ``prepare``: the EgoSchema-format files of ``divot data shapes`` (egoschema/questions.json,
  egoschema/subset_answers.json, videos/<q_uid>.mp4) as the JSON-lines documents of the lmms-eval task
  ``shapes_egoschema_mcppl`` (benchmarks/lmms_eval_tasks/shapes_egoschema.yaml): {q_uid, video, question, option, answer}.
- ``compare``: ``divot eval egoschema``'s predictions.jsonl + summary.json against lmms-eval's results and logged
  samples; writes the result JSON and exits 1 when the accuracies or any question's prediction differ.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

logger = logging.getLogger("lmms_eval_local")

TASK = "shapes_egoschema_mcppl"
NUM_OPTIONS = 5
# divot eval logs scores rounded to 5 decimals; the harness's losses are the same float32 numbers, negated
SCORE_TOLERANCE = 1e-4


def prepare(shapes: Path, out: Path) -> int:
    """Write the task's documents; returns their number."""
    questions = json.loads((shapes / "egoschema" / "questions.json").read_text())
    answers = json.loads((shapes / "egoschema" / "subset_answers.json").read_text())
    lines = []
    for q in questions:
        video = (shapes / "videos" / f"{q['q_uid']}.mp4").resolve()
        if not video.is_file():
            raise FileNotFoundError(f"no video {video} for question {q['q_uid']}")
        lines.append(json.dumps({"q_uid": q["q_uid"], "video": str(video), "question": q["question"],
                                 "option": [q[f"option {j}"] for j in range(NUM_OPTIONS)],
                                 "answer": int(answers[q["q_uid"]])}))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    logger.info("wrote %d documents to %s", len(lines), out)
    return len(lines)


def _one(folder: Path, pattern: str) -> Path:
    found = sorted(folder.rglob(pattern))
    if not found:
        raise FileNotFoundError(f"no {pattern} under {folder}")
    return found[-1]  # the latest run's (lmms-eval names its files by date)


def lmms_predictions(lmms_out: Path) -> tuple[float, dict, dict, dict]:
    """lmms-eval's accuracy; per q_uid the prediction, the truth and the five mean log-likelihoods (minus the
    logged losses), from the logged samples."""
    results = json.loads(_one(lmms_out, "*_results.json").read_text())
    metrics = results["results"][TASK]
    accuracy = next(v for k, v in metrics.items() if k.split(",")[0] == "accuracy")
    preds, truth, scores = {}, {}, {}
    for line in _one(lmms_out, f"*_samples_{TASK}.jsonl").read_text().splitlines():
        sample = json.loads(line)
        record = sample["accuracy"]
        uid = record["q_uid"]
        preds[uid], truth[uid] = int(record["pred"]), int(record["answer"])
        scores[uid] = [-float(loss) for loss, _ in sample["filtered_resps"]]  # logged as strings
    return float(accuracy), preds, truth, scores


def divot_predictions(divot_out: Path) -> tuple[float, dict, dict, dict]:
    """``divot eval``'s accuracy; per question id the prediction, the truth and the five mean log-likelihoods
    (rounded to 5 decimals in predictions.jsonl)."""
    summary = json.loads((divot_out / "summary.json").read_text())
    accuracy = summary.get("accuracy", summary.get("metrics", {}).get("accuracy"))
    preds, truth, scores = {}, {}, {}
    for line in (divot_out / "predictions.jsonl").read_text().splitlines():
        r = json.loads(line)
        preds[r["id"]], truth[r["id"]], scores[r["id"]] = r["pred"], r.get("answer"), r["scores"]
    return float(accuracy), preds, truth, scores


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def compare(args) -> int:
    d_acc, d_pred, d_truth, d_scores = divot_predictions(args.divot_out)
    l_acc, l_pred, l_truth, l_scores = lmms_predictions(args.lmms_out)
    problems = []
    if set(d_pred) != set(l_pred):
        problems.append(f"question sets differ: {len(d_pred)} in divot eval, {len(l_pred)} in lmms-eval")
    if d_truth != l_truth:
        problems.append("the ground truths differ")
    differ = sorted(q for q in set(d_pred) & set(l_pred) if d_pred[q] != l_pred[q])
    if differ:
        problems.append(f"{len(differ)} question(s) predicted differently: {differ[:10]}")
    if abs(d_acc - l_acc) > 1e-9:
        problems.append(f"accuracies differ: divot eval {d_acc:.4f}, lmms-eval {l_acc:.4f}")
    common = sorted(set(d_scores) & set(l_scores))
    score_diff = max((abs(a - b) for q in common for a, b in zip(d_scores[q], l_scores[q], strict=True)),
                     default=0.0)
    if score_diff > SCORE_TOLERANCE:
        problems.append(f"option scores differ by up to {score_diff:.2e} (tolerance {SCORE_TOLERANCE:g})")
    result = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPU cores; device {args.device}",
        "task": TASK, "model": args.model,
        "data": {"generator": "divot data shapes", "split": args.split, "seed": args.seed,
                 "questions": len(d_pred)},
        "n": len(d_pred),
        "commands": {"data": args.data_command, "divot_eval": args.divot_command, "lmms_eval": args.lmms_command},
        "divot_eval": {"accuracy": d_acc, "seconds": args.divot_seconds},
        "lmms_eval": {"accuracy": l_acc, "seconds": args.lmms_seconds, "version": _version("lmms-eval")},
        "predictions_equal": not differ and set(d_pred) == set(l_pred),
        "option_scores_max_abs_diff": score_diff,
        "option_scores_tolerance": SCORE_TOLERANCE,
        "differing_questions": differ,
        "match": not problems,
        "problems": problems,
        "versions": {name: _version(name) for name in ("lmms-eval", "divot", "torch", "transformers", "datasets")},
        "python": platform.python_version(),
    }
    args.result.parent.mkdir(parents=True, exist_ok=True)
    args.result.write_text(json.dumps(result, indent=1) + "\n")
    logger.info("n=%d  divot eval accuracy %.4f  lmms-eval accuracy %.4f  predictions equal: %s  option scores "
                "within %.1e  -> %s", len(d_pred), d_acc, l_acc, result["predictions_equal"], score_diff, args.result)
    for problem in problems:
        logger.error("mismatch: %s", problem)
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="step", required=True)
    p = sub.add_parser("prepare", help="shapes-world EgoSchema files -> the task's JSON-lines documents")
    p.add_argument("--shapes", type=Path, required=True, help="the folder `divot data shapes` wrote")
    p.add_argument("--out", type=Path, required=True, help="the documents file (shapes_egoschema.jsonl)")
    c = sub.add_parser("compare", help="divot eval vs lmms-eval: accuracy and per-question predictions")
    c.add_argument("--divot-out", type=Path, required=True, help="divot eval egoschema --out folder")
    c.add_argument("--lmms-out", type=Path, required=True, help="lmms-eval --output_path folder")
    c.add_argument("--result", type=Path, required=True, help="the result JSON to write")
    c.add_argument("--model", default="shapes-tiny")
    c.add_argument("--device", default="cpu")
    c.add_argument("--seed", type=int, default=None, help="the shapes-world seed (recorded)")
    c.add_argument("--split", default=None, help="the shapes-world split (recorded)")
    c.add_argument("--data-command", default="")
    c.add_argument("--divot-command", default="")
    c.add_argument("--lmms-command", default="")
    c.add_argument("--divot-seconds", type=float, default=None)
    c.add_argument("--lmms-seconds", type=float, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    if args.step == "prepare":
        prepare(args.shapes, args.out)
        return 0
    return compare(args)


if __name__ == "__main__":
    sys.exit(main())
