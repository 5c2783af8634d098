"""EgoSchema-style evaluation throughput (questions per second), tiny widths, random weights.

Five-way multiple choice scored by option log-likelihood, through the library's own code paths:
- ``kv``: ``divot.eval.multiple_choice.make_predictor`` in mode ``ll`` (what ``divot eval egoschema`` runs):
  ``DivotLLM.score_continuations`` runs the question-and-video prefix once and continues each option from a
  copy of its KV cache;
- ``full``: five full forward passes, prefix + option each: ``DivotLMMs._continuation``, the lmms-eval
  adapter's ``loglikelihood`` path (divot/eval/lmms.py); the option with the lowest loss is the answer.
Clip tokens come through ``divot.eval.runner.VideoTokens``: from a token cache (``cache``) or by decoding and
tokenizing the video for every question (``decode``).

Two prompt shapes (``--shapes``):
- ``short``: shapes-world questions with their own videos and the tiny presets: one clip of 16 tokens, so the
  prefix is about 40 tokens and has little to share. All four settings (kv / full x cache / decode).
- ``long``: the same questions with ``--clips`` clips of ``--queries`` tokens each (default 20 x 64: the
  paper's EgoSchema prompt, DESIGN: 64 tokens a clip, up to 20 clips), about 1340 prefix tokens, so the prefix
  dominates as it does at 7B. Tiny widths with ``num_queries`` overridden (``resampler.num_queries`` of the
  tiny tokenizer, ``num_queries`` of the tiny LLM); the clip tokens are fixed N(0, 1) tensors (clips, q, d)
  standing in for a token cache (random weights: only the shapes matter). kv vs full, cache only.

Decoding ahead (``--num-workers 0 1 2``): questions per second of the ``kv`` / ``decode`` setting through
``VideoTokens.iterate`` (what ``divot eval`` runs): 0 decodes in the main process, N > 0 in N DataLoader
workers while the main process tokenizes and scores (``divot.data.prefetch``). Reported as the
``prefetch`` rows (short shape, questions from video); the predictions must equal the serial ones.

Timing: one untimed round over the first two questions, then ``--repeats`` rounds; each round runs every
setting once over all ``--num`` questions, the settings taking turns, so ratios are taken per round. The JSON
holds every round's seconds, the median, min, max and spread per setting (``questions_per_second`` from the
median), and each ratio of medians with its lowest and highest per-round value.

    python benchmarks/eval_throughput.py --num 100 --repeats 3 --clips 20 --queries 64 \\
        --out benchmarks/results/eval_throughput_tiny_cpu.json
    python benchmarks/eval_throughput.py --num 24 --repeats 3 --shapes short --num-workers 0 1 2 \\
        --out benchmarks/results/eval_prefetch_tiny_cpu.json
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from _timing import interleaved, load_avg, provenance, ratio, summarize

logger = logging.getLogger("eval_throughput")

SHAPES = ("short", "long")
TEXT_ROOM = 64  # positions left for the question and an option in the long shape (shapes-world text is short)


def build_model(num_queries: int | None):
    """A ``Divot`` of the tiny tokenizer and tiny LLM, random weights; ``num_queries`` overrides the tokens per
    clip of both (the tiny presets have 16)."""
    from divot.chat import Divot
    from divot.config import apply_overrides
    from divot.llm import DivotLLM
    from divot.llm.config import llm_preset
    from divot.llm.text_tokenizer import build_shapes_tokenizer
    from divot.tokenizer import VideoTokenizer, tokenizer_preset

    torch.manual_seed(0)
    if num_queries is None:
        return Divot.from_components(VideoTokenizer.from_preset("tiny"), DivotLLM.from_preset("tiny"))
    tok_config = apply_overrides(tokenizer_preset("tiny"), [f"resampler.num_queries={num_queries}"])
    llm_config = apply_overrides(llm_preset("tiny"), [f"num_queries={num_queries}"])
    text = build_shapes_tokenizer(vocab_size=llm_config.base.vocab_size)  # as DivotLLM.from_preset("tiny")
    llm = DivotLLM.from_llm(llm_config.base.to_hf(vocab_size=len(text)), text, llm_config)
    return Divot.from_components(VideoTokenizer(tok_config), llm)


def full_pass_predictor(model) -> Callable:
    """``predict(item, clips)`` scoring each option with its own forward pass (prefix + option)."""
    from divot.eval.lmms import DivotLMMs
    from divot.eval.multiple_choice import LL_TEMPLATE, mc_text

    lmm = DivotLMMs(divot=model)

    def predict(item, clips) -> dict:
        prompt = model.builder.qa_prompt(clips, mc_text(item, LL_TEMPLATE))
        losses = [lmm._continuation(prompt, option)[0] for option in item.options]  # mean NLL per token
        return {"pred": min(range(len(losses)), key=losses.__getitem__)}
    return predict


def answer_all(items, tokens, predict) -> list[int]:
    """The predicted option of every item (``run_items`` without the prediction log and progress bar)."""
    return [predict(item, tokens(item))["pred"] for item in items]


def prompt_lengths(model, items, tokens) -> dict:
    """Tokens of the prefix (question and video) and of the options, over all items."""
    from divot.eval.multiple_choice import LL_TEMPLATE, mc_text

    prefix = [len(model.builder.qa_prompt(tokens(it), mc_text(it, LL_TEMPLATE))) for it in items]
    options = [len(model.builder.encode(o)) for it in items for o in it.options]
    return {"prefix_tokens_min": min(prefix), "prefix_tokens_max": max(prefix),
            "prefix_tokens_mean": sum(prefix) / len(prefix), "option_tokens_min": min(options),
            "option_tokens_max": max(options), "option_tokens_mean": sum(options) / len(options)}


def measure_shape(shape: str, model, items, token_sources: dict, args) -> dict:
    """Warm-up, interleaved rounds of every (scoring, video input) setting; rows, ratios and agreement."""
    from divot.eval.multiple_choice import make_predictor
    from divot.eval.runner import EvalConfig

    cfg = EvalConfig(task="egoschema", questions=args.questions_file, out=args.tmp / "eval", videos=args.videos,
                     mode="ll", ll_normalize="mean", progress=False)
    predictors = {"kv": make_predictor(cfg, model), "full": full_pass_predictor(model)}
    settings = {(scoring, source): (tokens, predict) for scoring, predict in predictors.items()
                for source, tokens in token_sources.items()}
    for tokens, predict in settings.values():  # warm-up
        answer_all(items[:2], tokens, predict)
    calls = {f"{scoring}/{source}": (lambda t=tokens, p=predict: answer_all(items, t, p))
             for (scoring, source), (tokens, predict) in settings.items()}
    runs, preds = interleaved(calls, args.repeats, warmup=0)
    rows = []
    for (scoring, source) in settings:
        timing = summarize(runs[f"{scoring}/{source}"])
        rows.append({"shape": shape, "scoring": scoring, "video_input": source, "seconds": timing["median"],
                     "questions_per_second": len(items) / timing["median"],
                     "questions_per_second_min": len(items) / timing["max"],
                     "questions_per_second_max": len(items) / timing["min"], "timing": timing})
        logger.info("%-5s %-4s %-6s %7.2f questions/s (rounds: %s s)", shape, scoring, source,
                    len(items) / timing["median"], ", ".join(f"{t:.2f}" for t in timing["runs"]))
    ratios = {f"full_over_kv_{source}": ratio(runs[f"full/{source}"], runs[f"kv/{source}"])
              for source in token_sources}
    if "decode" in token_sources and "cache" in token_sources:
        ratios["decode_over_cache_kv"] = ratio(runs["kv/decode"], runs["kv/cache"])
        ratios["decode_over_cache_full"] = ratio(runs["full/decode"], runs["full/cache"])
    reference = preds["kv/cache"]
    agreement = {name: sum(a == b for a, b in zip(p, reference, strict=True)) / len(items)
                 for name, p in preds.items()}
    return {"rows": rows, "ratios": ratios, "agreement_with_kv_cache": agreement,
            "prompt": prompt_lengths(model, items, token_sources["cache"])}


def measure_prefetch(model, items, args) -> dict:
    """Questions/s from video (kv scoring) with 0..N decoding workers, interleaved; rows and agreement."""
    from divot.eval.multiple_choice import make_predictor
    from divot.eval.runner import EvalConfig, MissingVideo, VideoTokens

    cfg = EvalConfig(task="egoschema", questions=args.questions_file, out=args.tmp / "eval", videos=args.videos,
                     mode="ll", ll_normalize="mean", progress=False)
    predict, tokens = make_predictor(cfg, model), VideoTokens(model, None)

    def answer(num_workers: int) -> list:
        return [None if isinstance(clips, MissingVideo) else predict(item, clips)["pred"]
                for item, clips in tokens.iterate(items, num_workers)]

    calls = {f"workers={n}": (lambda n=n: answer(n)) for n in args.num_workers}
    runs, preds = interleaved(calls, args.repeats, warmup=1)
    rows = []
    for n in args.num_workers:
        timing = summarize(runs[f"workers={n}"])
        rows.append({"shape": "short", "scoring": "kv", "video_input": "decode", "num_workers": n,
                     "questions_per_second": len(items) / timing["median"],
                     "questions_per_second_min": len(items) / timing["max"],
                     "questions_per_second_max": len(items) / timing["min"], "timing": timing})
        logger.info("prefetch workers=%d %7.2f questions/s (rounds: %s s)", n, len(items) / timing["median"],
                    ", ".join(f"{t:.2f}" for t in timing["runs"]))
    base = f"workers={args.num_workers[0]}"
    ratios = {f"workers_{n}_over_{args.num_workers[0]}": ratio(runs[base], runs[f"workers={n}"])
              for n in args.num_workers[1:]}
    return {"rows": rows, "speedup": ratios,
            "predictions_agree": all(p == preds[base] for p in preds.values())}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num", type=int, default=100, help="questions (default 100)")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds over all settings (default 3)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--shapes", nargs="+", choices=SHAPES, default=list(SHAPES),
                        help="prompt shapes to measure (default both)")
    parser.add_argument("--clips", type=int, default=20, help="clips per question in the long shape (default 20)")
    parser.add_argument("--queries", type=int, default=64, help="tokens per clip in the long shape (default 64)")
    parser.add_argument("--num-workers", type=int, nargs="+", default=None,
                        help="also time decoding ahead with these numbers of DataLoader workers (e.g. 0 1 2)")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = parser.parse_args(argv)
    if args.num_workers is not None and min(args.num_workers) < 0:
        parser.error("--num-workers must be >= 0")
    for name in ("num", "repeats", "threads", "clips", "queries"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    from divot.llm.config import llm_preset

    positions = llm_preset("tiny").base.max_position_embeddings
    video = args.clips * (args.queries + 2) + 2  # <vid>, each clip's <frame> q tokens </frame>, </vid>
    if "long" in args.shapes and video + TEXT_ROOM > positions:
        parser.error(f"--clips {args.clips} x --queries {args.queries} takes {video} positions plus the question "
                     f"and options; the tiny LLM has {positions}")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(args.threads)
    record = provenance(argv, __file__, "cpu")

    from divot.data.shapes.generate import generate_dataset
    from divot.data.token_cache import TokenCache, build_token_cache
    from divot.eval.runner import EvalConfig, VideoTokens
    from divot.eval.tasks.egoschema import load_items

    shapes: dict[str, dict] = {}
    prefetch = None
    with tempfile.TemporaryDirectory() as tmp:
        args.tmp = Path(tmp)
        data = generate_dataset(args.tmp / "data", num=args.num, seed=0, num_stories=0, progress=False)
        args.questions_file, args.videos = Path(data["egoschema_questions"]), Path(data["video_dir"])
        items = load_items(EvalConfig(task="egoschema", questions=args.questions_file, out=args.tmp / "eval",
                                      videos=args.videos, progress=False))
        if "short" in args.shapes:
            model = build_model(None)
            build_token_cache(model.tokenizer, args.videos, args.tmp / "cache", progress=False)
            cache = TokenCache(args.tmp / "cache", expect_tokenizer=model.tokenizer)
            sources = {"cache": VideoTokens(model, cache), "decode": VideoTokens(model, None)}
            shapes["short"] = measure_shape("short", model, items, sources, args)
            shapes["short"]["clips_x_queries"] = list(cache[items[0].video_id].shape[:2])
            if args.num_workers:
                prefetch = measure_prefetch(model, items, args)
        if "long" in args.shapes:
            model = build_model(args.queries)
            cfg = model.llm.config
            generator = torch.Generator().manual_seed(1)
            # a token cache stands in: VideoTokens looks the video id up in any mapping
            fake_cache = {it.video_id: torch.randn(args.clips, cfg.num_queries, cfg.token_dim, generator=generator)
                          for it in items}
            shapes["long"] = measure_shape("long", model, items, {"cache": VideoTokens(model, fake_cache)}, args)
            shapes["long"]["clips_x_queries"] = [args.clips, args.queries]
            shapes["long"]["overrides"] = {"tokenizer": [f"resampler.num_queries={args.queries}"],
                                           "llm": [f"num_queries={args.queries}"]}

    result = {
        "num_questions": len(items), "options": 5, "repeats": args.repeats, "threads": torch.get_num_threads(),
        "presets": {"tokenizer": "tiny", "llm": "tiny"}, "device": "cpu", "weights": "random",
        **record, "load_avg_after": load_avg(),
        "predictions_agree": all(a == 1.0 for s in shapes.values() for a in s["agreement_with_kv_cache"].values()),
        "rows": [row for s in shapes.values() for row in s["rows"]],
        "ratios": {shape: s["ratios"] for shape, s in shapes.items()},
        "shapes": {shape: {k: v for k, v in s.items() if k not in ("rows", "ratios")} for shape, s in shapes.items()},
        "prefetch": prefetch,
    }
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    print("| shape | option scoring | video input | questions/s (median) | min-max | spread |")
    print("|---|---|---|---|---|---|")
    for r in result["rows"]:
        print(f"| {r['shape']} | {r['scoring']} | {r['video_input']} | {r['questions_per_second']:.2f} | "
              f"{r['questions_per_second_min']:.2f}-{r['questions_per_second_max']:.2f} | "
              f"{100 * r['timing']['spread']:.0f}% |")
    for r in (prefetch or {}).get("rows", []):
        print(f"| short | kv | decode, {r['num_workers']} workers | {r['questions_per_second']:.2f} | "
              f"{r['questions_per_second_min']:.2f}-{r['questions_per_second_max']:.2f} | "
              f"{100 * r['timing']['spread']:.0f}% |")
    for shape, ratios in result["ratios"].items():
        for name, r in ratios.items():
            print(f"{shape} {name}: {r['ratio_of_medians']:.2f}x (rounds {r['min']:.2f}-{r['max']:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
