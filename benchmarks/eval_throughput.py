"""EgoSchema-style evaluation throughput (questions per second), tiny widths, random weights.

Five-way multiple choice scored by option log-likelihood, through the library's own code paths:
- ``kv``: ``divot.eval.multiple_choice.make_predictor`` in mode ``ll`` (what ``divot eval egoschema`` runs):
  ``DivotLLM.score_continuations`` runs the question-and-video prefix once and continues each option from a
  copy of its KV cache;
- ``full``: five full forward passes, prefix + option each (``full_pass_predictor`` below: the reference's
  way, and the lmms-eval adapter's before it shared the prefix); the option with the lowest mean NLL is the
  answer.
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
``prefetch`` rows (short shape, questions from video); the predictions must equal the serial ones. The shapes
world's own videos (2 s, 32 x 32) cost almost nothing to decode, so ``--prefetch-video WxHxS`` gives every
question an EgoSchema-like file instead: W x H, S seconds at 30 fps, H.264, a drifting full-frame texture with
the question's shapes clip scaled into the middle and looped (``--prefetch-distinct`` distinct files, shared
round-robin by the questions: each question still decodes its own file). On a CPU-only machine the model and
the decoder (FFmpeg's threads) share the same cores, so there is little to overlap; ``--accelerator-ms`` adds,
after each answer, a wait with the CPU idle, as the main process waits on a GPU's forward pass, to measure how
much decoding ahead hides there. The ``ratio`` of a setting is serial / prefetched time at the same wait.

Timing: one untimed round over the first two questions, then ``--repeats`` rounds; each round runs every
setting once over all ``--num`` questions, the settings taking turns, so ratios are taken per round. The JSON
holds every round's seconds, the median, min, max and spread per setting (``questions_per_second`` from the
median), and each ratio of medians with its lowest and highest per-round value.

    python benchmarks/eval_throughput.py --num 100 --repeats 3 --clips 20 --queries 64 \\
        --out benchmarks/results/eval_throughput_tiny_cpu.json
    python benchmarks/eval_throughput.py --num 16 --repeats 3 --shapes short --num-workers 0 1 2 \\
        --prefetch-video 640x360x60 --accelerator-ms 0 1000 --out benchmarks/results/eval_prefetch_tiny_cpu.json
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
    """``predict(item, clips)`` scoring each option with its own forward pass over prefix + option (the
    reference's way, and this library's before the shared-prefix scorer): the option with the lowest mean NLL
    per token."""
    from divot.eval.multiple_choice import LL_TEMPLATE, mc_text

    llm = model.llm

    @torch.no_grad()
    def mean_nll(prompt, option: str) -> float:
        cont = model.builder.encode(option)
        dev = llm.device
        ids = torch.cat([prompt.input_ids, torch.tensor(cont)])[None].to(dev)  # (1, s + m)
        cmp = torch.zeros_like(ids, dtype=torch.bool)
        cmp[0, : len(prompt)] = prompt.cmp_mask.to(dev)
        embeds = llm.embed(ids, cmp, prompt.cmp_clips.to(dev))  # (1, s + m, h)
        logits = llm.llm(inputs_embeds=embeds).logits[0, len(prompt) - 1 : -1].float()  # (m, V)
        logp = logits.log_softmax(-1).gather(-1, ids[0, len(prompt) :, None])[:, 0]  # (m,)
        return float(-logp.mean())

    def predict(item, clips) -> dict:
        prompt = model.builder.qa_prompt(clips, mc_text(item, LL_TEMPLATE))
        losses = [mean_nll(prompt, option) for option in item.options]
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


def long_videos(items, out_dir: Path, spec: str, distinct: int) -> list:
    """``items`` with EgoSchema-like videos (see the module docstring): W x H, S seconds, 30 fps."""
    import dataclasses

    import av
    import numpy as np
    from _textured_video import write_textured_video
    from PIL import Image

    width, height, seconds = (int(v) for v in spec.lower().split("x"))
    fps, box = 30, min(width, height) // 2
    top, left = (height - box) // 2, (width - box) // 2
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for k, item in enumerate(items[:distinct]):
        with av.open(str(item.video)) as source:
            clip = [f.to_ndarray(format="rgb24") for f in source.decode(video=0)]  # the shapes clip, looped
        clip = [np.asarray(Image.fromarray(f).resize((box, box), Image.Resampling.NEAREST)) for f in clip]

        def paint(frame, t: int, clip=clip) -> None:
            frame[top : top + box, left : left + box] = clip[(t * len(clip) // (2 * fps)) % len(clip)]

        paths.append(write_textured_video(out_dir / f"long_{k}.mp4", height, width, fps, seconds, paint))
    return [dataclasses.replace(item, video=paths[i % len(paths)]) for i, item in enumerate(items)]


def measure_prefetch(model, items, args) -> dict:
    """Questions/s from video (kv scoring) with 0..N decoding workers and each ``--accelerator-ms`` wait,
    interleaved; rows, speed-ups and agreement."""
    import time

    from divot.eval.multiple_choice import make_predictor
    from divot.eval.runner import EvalConfig, MissingVideo, VideoTokens

    cfg = EvalConfig(task="egoschema", questions=args.questions_file, out=args.tmp / "eval", videos=args.videos,
                     mode="ll", ll_normalize="mean", progress=False)
    predict, tokens = make_predictor(cfg, model), VideoTokens(model, None)

    def answer(num_workers: int, wait_ms: int) -> list:
        preds = []
        for item, clips in tokens.iterate(items, num_workers):
            preds.append(None if isinstance(clips, MissingVideo) else predict(item, clips)["pred"])
            time.sleep(wait_ms / 1000)  # an accelerator's forward: the CPU is free meanwhile
        return preds

    settings = [(n, ms) for ms in args.accelerator_ms for n in args.num_workers]
    calls = {f"workers={n},wait={ms}ms": (lambda n=n, ms=ms: answer(n, ms)) for n, ms in settings}
    runs, preds = interleaved(calls, args.repeats, warmup=1)
    rows, ratios = [], {}
    for n, ms in settings:
        timing = summarize(runs[f"workers={n},wait={ms}ms"])
        rows.append({"shape": "short", "scoring": "kv", "video_input": "decode", "num_workers": n,
                     "accelerator_ms": ms, "questions_per_second": len(items) / timing["median"],
                     "questions_per_second_min": len(items) / timing["max"],
                     "questions_per_second_max": len(items) / timing["min"], "timing": timing})
        logger.info("prefetch workers=%d wait=%dms %7.2f questions/s (rounds: %s s)", n, ms,
                    len(items) / timing["median"], ", ".join(f"{t:.2f}" for t in timing["runs"]))
        base = f"workers={args.num_workers[0]},wait={ms}ms"
        if n != args.num_workers[0]:
            ratios[f"workers_{n}_over_{args.num_workers[0]}_wait_{ms}ms"] = ratio(runs[base],
                                                                                runs[f"workers={n},wait={ms}ms"])
    first = next(iter(preds.values()))
    return {"rows": rows, "speedup": ratios, "predictions_agree": all(p == first for p in preds.values())}


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
    parser.add_argument("--prefetch-video", default=None, metavar="WxHxS",
                        help="decoding-ahead rows on EgoSchema-like videos of W x H pixels and S seconds "
                             "(e.g. 640x360x60) instead of the 32 x 32 shapes clips")
    parser.add_argument("--prefetch-distinct", type=int, default=4, help="distinct such videos (default 4)")
    parser.add_argument("--accelerator-ms", type=int, nargs="+", default=[0],
                        help="decoding-ahead rows: after each answer, wait this long with the CPU idle, as the "
                             "main process does while an accelerator runs the model (default 0: CPU only)")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = parser.parse_args(argv)
    if min(args.accelerator_ms) < 0:
        parser.error("--accelerator-ms must be >= 0")
    if args.num_workers is not None and min(args.num_workers) < 0:
        parser.error("--num-workers must be >= 0")
    if args.prefetch_video is not None:
        parts = args.prefetch_video.lower().split("x")
        if len(parts) != 3 or not all(v.isdigit() and int(v) > 0 for v in parts):
            parser.error(f"--prefetch-video must be WxHxS with positive integers, got {args.prefetch_video!r}")
    for name in ("num", "repeats", "threads", "clips", "queries", "prefetch_distinct"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
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
                videos = items
                if args.prefetch_video:
                    videos = long_videos(items, args.tmp / "long", args.prefetch_video, args.prefetch_distinct)
                prefetch = measure_prefetch(model, videos, args)
                prefetch["videos"] = args.prefetch_video or "shapes world (32 x 32, 2 s)"
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
        print(f"| short ({prefetch['videos']}) | kv | decode, {r['num_workers']} workers, "
              f"{r['accelerator_ms']} ms accelerator wait | {r['questions_per_second']:.2f} | "
              f"{r['questions_per_second_min']:.2f}-{r['questions_per_second_max']:.2f} | "
              f"{100 * r['timing']['spread']:.0f}% |")
    for name, r in (prefetch or {}).get("speedup", {}).items():
        print(f"prefetch {name}: {r['ratio_of_medians']:.2f}x (rounds {r['min']:.2f}-{r['max']:.2f})")
    for shape, ratios in result["ratios"].items():
        for name, r in ratios.items():
            print(f"{shape} {name}: {r['ratio_of_medians']:.2f}x (rounds {r['min']:.2f}-{r['max']:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
