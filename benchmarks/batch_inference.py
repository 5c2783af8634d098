"""Batch inference speed-up at tiny widths (random weights): multiple-choice scoring and greedy answering.

Settings, all through the library's code paths:
- scoring (five options per question, ``--clips`` clips of ``--queries`` tokens each: the paper's EgoSchema prompt
  shape by default, 20 x 64, about 1300 prefix tokens):
  - ``mc_per_option``: ``batch_generation.score_continuation_ids_reference``, the path before batching: the
    prefix once, then each option alone over a copy of its KV cache (6 forward passes per question);
  - ``mc_options_batched``: ``DivotLLM.score_continuations``: the prefix once, the 5 options in one right-padded
    pass (2 per question);
  - ``mc_questions_batched``: ``DivotLLM.score_continuations_batch`` over ``--batch-size`` questions at a time
    (2 passes per batch: ``divot eval --batch-size``).
- answering (``--gen-clips`` clips per prompt, ``--max-new-tokens`` greedy tokens): ``gen_one_at_a_time``
  (``DivotLLM.generate_text`` per prompt) vs ``gen_batched`` (``generate_texts``, ``--batch-size`` prompts at a
  time, left-padded).

Every setting runs over the same ``--num`` questions per repeat, the settings taking turns (``_timing.interleaved``);
the JSON holds each repeat's seconds, medians, spreads, the speed-ups as ratios of medians with their per-repeat
range, and checks that the batched results equal the unbatched ones (scores: max abs difference; answers: equal).

    python benchmarks/batch_inference.py --num 16 --batch-size 8 --repeats 3 \\
        --out benchmarks/results/batch_inference.json
    python benchmarks/batch_inference.py --size paper --device cuda --num 16 --batch-size 8 --repeats 3 \\
        --out benchmarks/results/batch_inference_paper_h200.json
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import torch
from _timing import interleaved, load_avg, provenance, ratio, summarize

logger = logging.getLogger("batch_inference")

QUESTIONS = ["what colour is the object?", "where does the object go?", "what shape is the object?",
             "how many objects are there?", "what does the object do after it stops?"]
OPTIONS = ["a red circle moves left", "a blue square moves up", "a green triangle stays still",
           "two objects swap places", "the object grows and then shrinks"]


def build_model(num_queries: int):
    """The tiny LLM (random weights) with ``num_queries`` tokens per clip."""
    from divot.config import apply_overrides
    from divot.llm import DivotLLM
    from divot.llm.config import llm_preset
    from divot.llm.text_tokenizer import build_shapes_tokenizer

    torch.manual_seed(0)
    config = apply_overrides(llm_preset("tiny"), [f"num_queries={num_queries}"])
    text = build_shapes_tokenizer(vocab_size=config.base.vocab_size)
    return DivotLLM.from_llm(config.base.to_hf(vocab_size=len(text)), text, config).eval()


def prompts(llm, builder, num: int, clips: int, seed: int) -> list:
    """``num`` QA prompts with fixed N(0, 1) clip tokens (clips, q, d) and questions of different lengths."""
    gen = torch.Generator().manual_seed(seed)
    q, d = llm.config.num_queries, llm.config.token_dim
    return [builder.qa_prompt(torch.randn(clips, q, d, generator=gen), QUESTIONS[i % len(QUESTIONS)])
            for i in range(num)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num", type=int, default=16, help="questions per repeat")
    parser.add_argument("--batch-size", type=int, default=8, help="questions per batch")
    parser.add_argument("--clips", type=int, default=20, help="clips per scoring prompt")
    parser.add_argument("--queries", type=int, default=64, help="tokens per clip")
    parser.add_argument("--gen-clips", type=int, default=4, help="clips per answering prompt")
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="torch threads (the project's machines have 2)")
    parser.add_argument("--size", choices=["tiny", "paper"], default="tiny",
                        help="paper: Mistral-7B shapes in bf16, random weights (64 tokens a clip; --queries unused)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/batch_inference.json"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    torch.set_num_threads(args.threads)
    record = {"provenance": provenance(argv, __file__), "settings": vars(args) | {"out": str(args.out)}}

    from divot.llm.batch_generation import score_continuation_ids_reference
    from divot.llm.sequences import SequenceBuilder

    if args.size == "paper":
        from _gpu_parts import build_llm

        llm = build_llm("paper", torch.device(args.device)).eval()
        args.queries = llm.config.num_queries
    else:
        llm = build_model(args.queries).to(args.device)
    builder = SequenceBuilder.from_config(llm.tokenizer, llm.config)
    mc = prompts(llm, builder, args.num, args.clips, seed=0)
    gen = prompts(llm, builder, args.num, args.gen_clips, seed=1)
    option_ids = [builder.encode(o) for o in OPTIONS]
    record["shapes"] = {"mc_prefix_tokens": sorted({len(p) for p in mc}),
                        "gen_prefix_tokens": sorted({len(p) for p in gen}),
                        "option_tokens": [len(o) for o in option_ids], "num_queries": args.queries,
                        "hidden_size": llm.config.hidden_size, "layers": llm.llm.config.num_hidden_layers}
    chunks = [list(range(i, min(i + args.batch_size, args.num))) for i in range(0, args.num, args.batch_size)]
    greedy = {"greedy": True, "max_new_tokens": args.max_new_tokens}

    settings = {
        "mc_per_option": lambda: [score_continuation_ids_reference(llm, p, option_ids, True) for p in mc],
        "mc_options_batched": lambda: [llm.score_continuation_ids(p, option_ids, True) for p in mc],
        "mc_questions_batched": lambda: [s for c in chunks for s in llm.score_continuations_batch(
            [mc[i] for i in c], [OPTIONS] * len(c), True)],
        "gen_one_at_a_time": lambda: [llm.generate_text(p, **greedy) for p in gen],
        "gen_batched": lambda: llm.generate_texts(gen, batch_size=args.batch_size, **greedy),
    }
    logger.info("timing %d settings x %d repeats over %d questions", len(settings), args.repeats, args.num)
    runs, last = interleaved(settings, args.repeats, warmup=1)
    record["seconds"] = {name: summarize(r) for name, r in runs.items()}
    record["questions_per_second"] = {name: args.num / s["median"] for name, s in record["seconds"].items()}
    record["speedup"] = {
        "mc_options_batched_vs_per_option": ratio(runs["mc_per_option"], runs["mc_options_batched"]),
        "mc_questions_batched_vs_per_option": ratio(runs["mc_per_option"], runs["mc_questions_batched"]),
        "mc_questions_batched_vs_options_batched": ratio(runs["mc_options_batched"], runs["mc_questions_batched"]),
        "gen_batched_vs_one_at_a_time": ratio(runs["gen_one_at_a_time"], runs["gen_batched"]),
    }
    ref = torch.stack(last["mc_per_option"])
    record["checks"] = {
        "mc_options_batched_max_abs_diff": float((torch.stack(last["mc_options_batched"]) - ref).abs().max()),
        "mc_questions_batched_max_abs_diff": float((torch.stack(last["mc_questions_batched"]) - ref).abs().max()),
        "gen_batched_equals_one_at_a_time": last["gen_batched"] == last["gen_one_at_a_time"],
    }
    record["load_avg_after"] = load_avg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1) + "\n")
    for name, s in record["seconds"].items():
        logger.info("%-22s median %.3f s (spread %.2f)", name, s["median"], s["spread"])
    for name, r in record["speedup"].items():
        logger.info("%-40s x%.2f [%.2f-%.2f]", name, r["ratio_of_medians"], r["min"], r["max"])
    logger.info("checks %s -> %s", record["checks"], args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
