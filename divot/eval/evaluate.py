"""``evaluate(cfg, model)``: run one benchmark task (``divot.eval.tasks``) and write its files.

Under ``cfg.out``: ``run.json`` (the settings that decide the predictions), ``predictions.jsonl`` (one line
per item, appended as it goes; a rerun resumes), ``summary.json`` and the task's extra files (EgoSchema's
submission). The summary records the task, the model, the input files, the prompt (template, sequence
format and the first filled-in example), the decoding settings, the judge's identity, the counts (total,
answered, missing_videos, unparseable, ...), ``accuracy`` with its 95% bootstrap interval, and the list of
missing videos with the reason for each.

Under ``torchrun`` (``divot.distributed``) every rank answers every world-th item into its own
``predictions.rank<r>.jsonl``; after a barrier rank 0 merges them into ``predictions.jsonl`` (item order) and
writes the summary and the task's files; the other ranks read the summary back. ``predictions.jsonl`` and the
summary of a fresh run are the same whatever the number of ranks and ``num_workers``, except the two fields
that describe the run rather than the result: ``seconds_this_run`` and ``parallel`` (world size, decoding
workers). A rerun (with any number of ranks) redoes only the items no rank finished.

Example::

    from divot import Divot
    from divot.eval.evaluate import evaluate
    from divot.eval.runner import EvalConfig
    model = Divot.from_pretrained("shapes-tiny")
    cfg = EvalConfig(task="egoschema", questions="questions.json", answers="subset_answers.json",
                     videos="videos/", out="runs/egoschema", mode="ll")
    evaluate(cfg, model)["accuracy"]
"""

from __future__ import annotations

import logging
import time

from divot.distributed import barrier, rank_world, shard
from divot.eval import multiple_choice, openended
from divot.eval.runner import (
    PREDICTIONS_NAME,
    SUMMARY_NAME,
    EvalConfig,
    PredictionLog,
    VideoTokens,
    check_run_settings,
    limit_items,
    merge_parts,
    missing_summary,
    model_identity,
    open_cache,
    read_json,
    run_items,
    write_summary,
)
from divot.eval.tasks import task_module
from divot.llm.sequences import QA_PROMPT_ENCODINGS

logger = logging.getLogger(__name__)


def _prompt_info(task, cfg: EvalConfig, example, model) -> dict:
    if task.KIND == "mc":
        template = cfg.prompt_template or multiple_choice.default_template(cfg.mode)
        filled = multiple_choice.mc_text(example, template) if example is not None else None
        extra = {"continuations": "the option texts"} if cfg.mode == "ll" else {
            "answer_parsing": "divot.eval.answers.parse_letter (unparseable = wrong)"}
    else:
        template = cfg.prompt_template or openended.OPEN_TEMPLATE
        filled = template.format(question=example.question) if example is not None else None
        extra = {}
    fmt = model.builder.sequence_format
    return {"template": template, "sequence_format": fmt, "encoding": QA_PROMPT_ENCODINGS[fmt], "example": filled,
            **extra}


def evaluate(cfg: EvalConfig, model, judge=None) -> dict:
    """Run ``cfg.task`` with ``model`` (a ``divot.Divot``); ``judge`` (open-ended tasks) is a callable from
    ``divot.eval.judge``. Returns the summary (also written to ``cfg.out/summary.json``)."""
    task = task_module(cfg.task)
    if task.KIND == "open" and cfg.mode != "gen":
        logger.info("%s is open-ended: answers are generated (mode gen)", cfg.task)
        cfg.mode = "gen"
    if task.KIND == "open":
        openended.accuracy_metric(cfg)  # fail before predicting when the metric cannot be computed
    elif cfg.judge:
        raise ValueError(f"{cfg.task} is multiple choice: a judge is not used")
    items = limit_items(task.load_items(cfg), cfg.limit)
    if not items:
        raise ValueError(f"no questions in {cfg.questions}")
    if task.KIND == "mc":
        decoding = multiple_choice.decoding_settings(cfg, model)
        predict = multiple_choice.make_predictor(cfg, model)
    else:
        decoding = openended.decoding_settings(cfg, model)
        predict = openended.make_predictor(cfg, model, judge)
    prompt = _prompt_info(task, cfg, items[0], model)
    identity = model_identity(model, cfg.model)
    judge_identity = judge.identity if judge is not None else None
    settings = {"task": cfg.task, "model": identity, "questions": str(cfg.questions), "answers": str(cfg.answers),
                "prompt_template": prompt["template"], "decoding": decoding, "max_clips": cfg.max_clips,
                "judge": {k: v for k, v in (judge_identity or {}).items()
                          if k not in ("served_model", "system_fingerprint")}}
    rank, world = rank_world()
    if rank == 0:  # first, alone: write or check run.json, fold in the parts a killed multi-process run left
        cfg.out.mkdir(parents=True, exist_ok=True)
        check_run_settings(cfg.out, settings)
        PredictionLog(cfg.out)  # cuts a line a kill left half-written, before other ranks read the file
        merge_parts(cfg.out, items)
    barrier()
    if rank != 0:
        check_run_settings(cfg.out, settings)
    log = PredictionLog(cfg.out, rank=None if world == 1 else rank)
    tokens = VideoTokens(model, open_cache(cfg, model), cfg.max_clips)
    start = time.perf_counter()
    run_items(shard(items, rank, world), predict, tokens, log, desc=cfg.task, progress=cfg.progress and rank == 0,
              num_workers=cfg.num_workers)
    barrier()
    if rank != 0:
        barrier()  # rank 0 merges and writes the summary
        return read_json(cfg.out / SUMMARY_NAME, "evaluation summary")
    merge_parts(cfg.out, items)
    log = PredictionLog(cfg.out)
    records = [log.records[it.item_id] for it in items]
    seconds = time.perf_counter() - start
    if task.KIND == "mc":
        metrics = multiple_choice.summarize_mc(records, cfg, task.GROUP_KEY)
    else:
        metrics = openended.summarize_open(records, cfg)
    summary = {
        "task": cfg.task, "model": identity,
        "inputs": {"questions": str(cfg.questions), "answers": str(cfg.answers), "videos": str(cfg.videos),
                   "tokens_cache": str(cfg.tokens_cache), "limit": cfg.limit, "max_clips": cfg.max_clips},
        "prompt": prompt, "decoding": decoding,
        "judge": judge.identity if judge is not None else None,
        **metrics, **missing_summary(records),
        "seconds_this_run": round(seconds, 3),
        "parallel": {"world_size": world, "num_workers": cfg.num_workers},
        "files": {"predictions": str(cfg.out / PREDICTIONS_NAME), "summary": str(cfg.out / SUMMARY_NAME)},
    }
    finish = getattr(task, "finish", None)
    if finish is not None:
        finish(cfg, records, summary)
    write_summary(cfg.out, summary)
    barrier()
    acc = summary["accuracy"]
    logger.info("%s: accuracy %s over %d answered of %d (%d missing videos); summary in %s", cfg.task,
                "n/a" if acc is None else f"{acc:.4f}", summary["counts"]["answered"], len(records),
                summary["missing_videos"], cfg.out / "summary.json")
    return summary
