"""Multiple-choice answering (EgoSchema, NExT-QA): option log-likelihood (``ll``) or generation + letter (``gen``).

Every prompt is a QA turn of the Divot-LLM (DESIGN section 6): ``<s>[INST] <vid> clips </vid> {text} [/INST]\\n``
where ``{text}`` is the template filled in.

- ``ll`` (default template ``LL_TEMPLATE`` = ``"{question}"``): the 5 options are scored as continuations of
  the prompt with ``DivotLLM.score_continuations``: the question-and-video prefix runs once and its KV cache
  is shared by the options, which run together in one more forward pass (right-padded); with ``--batch-size N``
  N questions' prefixes run in one left-padded pass and their 5 N options in one more
  (``DivotLLM.score_continuations_batch``). The score is the mean log-likelihood per token
  (``ll_normalize="mean"``, so long options are not penalised) or the sum; the prediction is the highest score. This is also how the
  shapes-world model is trained (the answer of an EgoSchema-format record is the option text).
- ``gen`` (default template ``GEN_TEMPLATE``): the question, the options as "A. ..." lines and "Answer with
  the option's letter from the given choices directly."; greedy decoding, at most ``GEN_MAX_NEW_TOKENS``
  new tokens unless set; the answer is parsed with ``divot.eval.answers.parse_letter``. An unparseable answer
  is wrong, counted (``unparseable``) and listed, never replaced by a guess. With ``--batch-size N`` greedy
  answers are decoded N questions at a time (the same answers); sampled ones stay one at a time, so that each
  item keeps its own seed.

Templates may use ``{question}`` and ``{options}`` (the lettered lines).
"""

from __future__ import annotations

from collections import Counter

from divot.eval.answers import option_letters, parse_letter
from divot.eval.bootstrap import bootstrap_ci
from divot.eval.runner import ANSWERED, EvalConfig, EvalItem, batched

LL_TEMPLATE = "{question}"
GEN_TEMPLATE = "{question}\n{options}\nAnswer with the option's letter from the given choices directly."
GEN_MAX_NEW_TOKENS = 16


def format_options(options: list[str]) -> str:
    letters = option_letters(len(options))
    return "\n".join(f"{letters[i]}. {opt}" for i, opt in enumerate(options))


def mc_text(item: EvalItem, template: str) -> str:
    """The question text of the prompt: ``template`` filled with the question and the lettered options."""
    return template.format(question=item.question, options=format_options(item.options or []))


def default_template(mode: str) -> str:
    return LL_TEMPLATE if mode == "ll" else GEN_TEMPLATE


def decoding_settings(cfg: EvalConfig, model) -> dict:
    """What the summary records about decoding / scoring, with the model's defaults filled in."""
    if cfg.mode == "ll":
        return {"mode": "ll", "score": f"log-likelihood per continuation, {cfg.ll_normalize} over tokens",
                "kv_cache_shared_prefix": True}
    llm = model.llm.config
    out = {"mode": "gen", "greedy": cfg.greedy,
           "max_new_tokens": cfg.max_new_tokens or GEN_MAX_NEW_TOKENS, "seed": cfg.seed}
    if not cfg.greedy:
        out.update(temperature=cfg.temperature or llm.temperature, top_p=cfg.top_p or llm.top_p,
                   seeding="per item: seed and crc32(item id)")
    return out


def make_predictor(cfg: EvalConfig, model):
    """``predict(item, clips) -> fields`` for ``run_items``: ``pred`` (index or None) and the evidence.

    ``predict.batch(items, clips_list)`` answers several items at once (``run_items`` with ``cfg.batch_size``)."""
    template = cfg.prompt_template or default_template(cfg.mode)

    def prompt_of(item: EvalItem, clips):
        return model.builder.qa_prompt(clips, mc_text(item, template))

    if cfg.mode == "ll":
        normalize = cfg.ll_normalize == "mean"

        def fields(scores) -> dict:
            return {"pred": int(scores.argmax()), "scores": [round(float(s), 5) for s in scores]}

        def predict(item: EvalItem, clips) -> dict:
            return fields(model.llm.score_continuations(prompt_of(item, clips), list(item.options), normalize))

        def predict_batch(items: list[EvalItem], clips_list: list) -> list[dict]:
            prompts = [prompt_of(item, clips) for item, clips in zip(items, clips_list, strict=True)]
            scores = model.llm.score_continuations_batch(prompts, [list(item.options) for item in items], normalize)
            return [fields(s) for s in scores]
        return batched(predict, predict_batch, cfg.batch_size)

    decoding = cfg.decoding()
    decoding.setdefault("max_new_tokens", GEN_MAX_NEW_TOKENS)

    def predict(item: EvalItem, clips) -> dict:
        response = model.generate_text(prompt_of(item, clips),
                                       seed=None if cfg.greedy else cfg.item_seed(item.item_id), **decoding)
        return {"pred": parse_letter(response, item.options), "response": response}

    def predict_batch(items: list[EvalItem], clips_list: list) -> list[dict]:
        if not cfg.greedy:  # sampled answers keep their per-item seeds: one at a time
            return [predict(item, clips) for item, clips in zip(items, clips_list, strict=True)]
        prompts = [prompt_of(item, clips) for item, clips in zip(items, clips_list, strict=True)]
        responses = model.generate_text(prompts, **decoding)
        return [{"pred": parse_letter(r, item.options), "response": r}
                for item, r in zip(items, responses, strict=True)]
    return batched(predict, predict_batch, cfg.batch_size)


def summarize_mc(records: list[dict], cfg: EvalConfig, group_key: str | None = None,
                 max_listed: int = 1000) -> dict:
    """Counts, ``accuracy`` (with its bootstrap CI) over the answered items that have a ground truth, the
    unparseable answers (wrong, listed) and, with ``group_key``, accuracy per group (e.g. NExT-QA types)."""
    answered = [r for r in records if r["status"] == ANSWERED]
    scored = [r for r in answered if r.get("answer") is not None]
    correct = [int(r["pred"] is not None and r["pred"] == r["answer"]) for r in scored]
    unparseable = [r["id"] for r in answered if r["pred"] is None]
    acc = bootstrap_ci(correct, num_resamples=cfg.bootstrap_resamples, seed=cfg.seed)
    out = {
        "counts": {"total": len(records), "answered": len(answered), "scored": len(scored),
                   "missing_videos": len(records) - len(answered), "unparseable": len(unparseable)},
        "accuracy": acc["value"],
        "accuracy_ci95": [acc["ci_low"], acc["ci_high"]],
        "accuracy_bootstrap": {k: acc[k] for k in ("level", "n", "num_resamples", "seed")},
        "accuracy_counting_missing_as_wrong": None,
        "unparseable_ids": unparseable[:max_listed],
        "prediction_distribution": dict(sorted(Counter(str(r["pred"]) for r in answered).items())),
    }
    with_truth = [r for r in records if r.get("answer") is not None]
    if with_truth:
        out["accuracy_counting_missing_as_wrong"] = sum(correct) / len(with_truth)
    if group_key:
        groups: dict[str, list[int]] = {}
        for r, c in zip(scored, correct, strict=True):
            groups.setdefault(str(r.get(group_key)), []).append(c)
        out[f"accuracy_by_{group_key}"] = {g: sum(v) / len(v) for g, v in sorted(groups.items())}
    return out
