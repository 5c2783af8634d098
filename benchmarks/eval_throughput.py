"""EgoSchema-style evaluation throughput (questions per second), tiny presets, random weights.

Compares, on shapes-world questions in EgoSchema format (5 options each):
- scoring: the shared-prefix KV cache (``DivotLLM.score_continuations``: the question-and-video prefix runs
  once, each option continues from a copy of its cache) vs five full forward passes (prefix + option each);
- video input: tokens read from a token cache (``TokenCache``) vs decoding the video and running the
  tokenizer for every question.

    python benchmarks/eval_throughput.py --num 20 --out benchmarks/results/eval_throughput_tiny_cpu.json

Random weights: the numbers measure speed only. The LLM preset's sequence is short (16 tokens per clip, one
clip per shapes video), so the prefix is small and the KV-cache gain is a lower bound of what long
EgoSchema prompts (180 s = 20 clips x 64 tokens with the paper preset) get.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

logger = logging.getLogger("eval_throughput")


@torch.no_grad()
def full_forward_scores(model, prompt, options: list[str]) -> torch.Tensor:
    """Mean log-likelihood per token of each option, one full forward pass (prefix + option) per option."""
    llm, scores = model.llm, []
    for text in options:
        cont = model.builder.encode(text)
        ids = torch.cat([prompt.input_ids, torch.tensor(cont)])[None].to(llm.device)  # (1, s + m)
        cmp = torch.zeros_like(ids, dtype=torch.bool)
        cmp[0, : len(prompt)] = prompt.cmp_mask
        logits = llm.llm(inputs_embeds=llm.embed(ids, cmp, prompt.cmp_clips)).logits[0, len(prompt) - 1 : -1]
        logp = logits.float().log_softmax(-1).gather(-1, ids[0, len(prompt):, None])[:, 0]  # (m,)
        scores.append(logp.mean())
    return torch.stack(scores)


def run(model, questions, videos: Path, cache, scoring: str, source: str) -> tuple[float, list[int]]:
    preds = []
    start = time.perf_counter()
    for q in questions:
        clips = cache[q["q_uid"]].float() if source == "cache" else model.tokens(videos / f"{q['q_uid']}.mp4")
        prompt = model.builder.qa_prompt(clips, q["question"])
        options = [q[f"option {j}"] for j in range(5)]
        if scoring == "kv":
            scores = model.llm.score_continuations(prompt, options, normalize=True)
        else:
            scores = full_forward_scores(model, prompt, options)
        preds.append(int(scores.argmax()))
    return time.perf_counter() - start, preds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num", type=int, default=20, help="questions (default 20)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats; the best is reported (default 3)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(args.threads)

    from divot.chat import Divot
    from divot.data.shapes.generate import generate_dataset
    from divot.data.token_cache import TokenCache, build_token_cache
    from divot.llm import DivotLLM
    from divot.tokenizer import VideoTokenizer

    torch.manual_seed(0)
    model = Divot.from_components(VideoTokenizer.from_preset("tiny"), DivotLLM.from_preset("tiny"))
    with tempfile.TemporaryDirectory() as tmp:
        data = generate_dataset(Path(tmp) / "data", num=args.num, seed=0, num_stories=0, progress=False)
        questions = json.loads(Path(data["egoschema_questions"]).read_text())
        videos = Path(data["video_dir"])
        build_token_cache(model.tokenizer, videos, Path(tmp) / "cache", progress=False)
        cache = TokenCache(Path(tmp) / "cache", expect_tokenizer=model.tokenizer)
        run(model, questions[:2], videos, cache, "kv", "decode")  # warm-up
        rows, preds = [], {}
        for scoring in ("kv", "full"):
            for source in ("cache", "decode"):
                best = min(run(model, questions, videos, cache, scoring, source)[0] for _ in range(args.repeats))
                preds[(scoring, source)] = run(model, questions, videos, cache, scoring, source)[1]
                rows.append({"scoring": scoring, "video_input": source, "seconds": round(best, 4),
                             "questions_per_second": round(len(questions) / best, 2)})
                logger.info("%-4s %-6s %.2f questions/s", scoring, source, len(questions) / best)
    agree = preds[("kv", "cache")] == preds[("full", "cache")] == preds[("kv", "decode")]
    result = {"num_questions": len(questions), "options": 5, "repeats": args.repeats, "threads": args.threads,
              "presets": {"tokenizer": "tiny", "llm": "tiny"}, "device": "cpu",
              "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads",
              "python": sys.version.split()[0], "torch": torch.__version__, "predictions_agree": agree, "rows": rows}
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
