"""Open-ended video QA (MSVD-QA, ActivityNet-QA): generate an answer, then score it offline and optionally
with an LLM judge.

Prompt: a Divot-LLM QA turn ``<s>[INST] <vid> clips </vid> {text} [/INST]\\n`` with ``{text}`` =
``OPEN_TEMPLATE`` filled in (default ``"{question}"``: the question as the benchmark gives it, as in
Video-ChatGPT's evaluation). Decoding: greedy, at most ``OPEN_MAX_NEW_TOKENS`` new tokens unless set.

Metrics per item (``divot.eval.answers``): ``exact`` (normalised, stemmed exact match), ``contains`` (the
normalised answer is a run of words of the prediction) and, with a judge (``divot.eval.judge``), the judge's
yes/no and 0-5 score. ``accuracy`` in the summary is the metric named by ``accuracy_metric`` ("judge" when a
judge is given, else "exact"); the other metrics are reported beside it, each with a bootstrap CI.
"""

from __future__ import annotations

from divot.eval.answers import contains_match, exact_match, normalize_answer
from divot.eval.bootstrap import bootstrap_ci
from divot.eval.runner import ANSWERED, EvalConfig, EvalItem, batched

OPEN_TEMPLATE = "{question}"
OPEN_MAX_NEW_TOKENS = 32
ACCURACY_METRICS = ("exact", "contains", "judge")


def accuracy_metric(cfg: EvalConfig) -> str:
    metric = cfg.accuracy_metric or ("judge" if cfg.judge else "exact")
    if metric not in ACCURACY_METRICS:
        raise ValueError(f"accuracy metric must be one of {ACCURACY_METRICS}, got {metric!r}")
    if metric == "judge" and not cfg.judge:
        raise ValueError("accuracy metric 'judge' needs a judge (--judge URL or model directory)")
    return metric


def decoding_settings(cfg: EvalConfig, model) -> dict:
    llm = model.llm.config
    out = {"mode": "gen", "greedy": cfg.greedy, "max_new_tokens": cfg.max_new_tokens or OPEN_MAX_NEW_TOKENS,
           "seed": cfg.seed}
    if not cfg.greedy:
        out.update(temperature=cfg.temperature or llm.temperature, top_p=cfg.top_p or llm.top_p,
                   seeding="per item: seed and crc32(item id)")
    return out


def make_predictor(cfg: EvalConfig, model, judge=None):
    """``predict(item, clips) -> fields``: the response, its normalised form, exact / contains and the judge's
    verdict (``judge``, ``judge_score``, ``judge_raw``, ``judge_parsed``) when a judge is given.
    ``predict.batch`` answers ``cfg.batch_size`` items in one batched decoding (greedy; sampled answers keep
    their per-item seeds and go one at a time)."""
    template = cfg.prompt_template or OPEN_TEMPLATE
    decoding = cfg.decoding()
    decoding.setdefault("max_new_tokens", OPEN_MAX_NEW_TOKENS)

    def fields(item: EvalItem, response: str) -> dict:
        truth = str(item.answer)
        out = {"question": item.question, "response": response, "normalized": normalize_answer(response),
               "exact": exact_match(response, truth), "contains": contains_match(response, truth)}
        if judge is not None:
            verdict = judge(item.question, truth, response)
            out.update(judge=verdict.correct, judge_score=verdict.score, judge_raw=verdict.raw,
                       judge_parsed=verdict.parsed)
        return out

    def prompt_of(item: EvalItem, clips):
        return model.builder.qa_prompt(clips, template.format(question=item.question))

    def predict(item: EvalItem, clips) -> dict:
        response = model.generate_text(prompt_of(item, clips),
                                       seed=None if cfg.greedy else cfg.item_seed(item.item_id), **decoding)
        return fields(item, response)

    def predict_batch(items: list[EvalItem], clips_list: list) -> list[dict]:
        if not cfg.greedy:  # sampled answers keep their per-item seeds: one at a time
            return [predict(item, clips) for item, clips in zip(items, clips_list, strict=True)]
        prompts = [prompt_of(item, clips) for item, clips in zip(items, clips_list, strict=True)]
        responses = model.generate_text(prompts, **decoding)  # greedy: equal to one at a time
        return [fields(item, r) for item, r in zip(items, responses, strict=True)]
    return batched(predict, predict_batch, cfg.batch_size)


def summarize_open(records: list[dict], cfg: EvalConfig) -> dict:
    """Counts and the metrics (each {value, ci95}); ``accuracy`` is the chosen one."""
    answered = [r for r in records if r["status"] == ANSWERED]
    metric = accuracy_metric(cfg)

    def ci(values):
        b = bootstrap_ci(values, num_resamples=cfg.bootstrap_resamples, seed=cfg.seed)
        return {"value": b["value"], "ci95": [b["ci_low"], b["ci_high"]]}

    metrics = {"exact": ci([int(r["exact"]) for r in answered]),
               "contains": ci([int(r["contains"]) for r in answered])}
    judged = [r for r in answered if "judge" in r]
    if judged:
        metrics["judge"] = ci([int(r["judge"]) for r in judged])
        metrics["judge_score"] = ci([float(r["judge_score"]) for r in judged])
    if metric not in metrics:
        raise ValueError(f"no item has the {metric!r} metric (were the predictions made without a judge?)")
    acc = bootstrap_ci([int(r[metric]) for r in (judged if metric == "judge" else answered)],
                       num_resamples=cfg.bootstrap_resamples, seed=cfg.seed)
    return {
        "counts": {"total": len(records), "answered": len(answered), "missing_videos": len(records) - len(answered),
                   "judged": len(judged), "judge_unparseable": sum(not r.get("judge_parsed", True) for r in judged),
                   "empty_answers": sum(not r["response"].strip() for r in answered)},
        "accuracy_metric": metric,
        "accuracy": acc["value"],
        "accuracy_ci95": [acc["ci_low"], acc["ci_high"]],
        "accuracy_bootstrap": {k: acc[k] for k in ("level", "n", "num_resamples", "seed")},
        "metrics": metrics,
    }
