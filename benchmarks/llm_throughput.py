"""Divot-LLM training throughput (tokens/s, steps/s; forward + backward + AdamW step), random weights.

Settings, all on the same model, optimiser and batches, run interleaved (one block of each per repeat, in turn)
so that a machine shared with other jobs slows them alike and the ratios stay fair:

- ``cache``     caption batches, clip tokens read from a token cache (``TokenCache`` lookup per sample), then
                ``SampleBuilder`` + ``LLMCollator`` + the LLM step (what ``train/llm.py`` does);
- ``reencode``  the same batches, but each sample's clips are decoded from the mp4 (the tokenizer's sparse
                frames, ``load_sparse_clips``) and tokenized under ``no_grad`` at every step, as the reference
                does, then the same LLM step;
- ``gen``       generation batches (``<s> caption <vid> clip </vid> </s>``, GMM loss on the clip);
- ``gen_nogmm`` the same generation batches, same 4D mask, without the GMM loss (the head does not run; its
                parameters get zero gradients and still take the AdamW step, as in a caption-only batch);
- ``head``      the GMM head alone (output projection + NLL, forward + backward) on hidden states of the
                generation batches' query positions.

The GMM head's share of a generation step is ``1 - gen_nogmm / gen`` (by steps) and ``head / gen`` (by the
isolated head time). Data preparation runs in the timed loop (``num_workers=0``); its share is reported.
Per setting the JSON keeps every round (``repeats``) and the spread of the seconds per step; ``ratios`` are the
median of the per-round ratios, ``ratio_detail`` adds the ratio of medians and the lowest / highest round.

    python benchmarks/llm_throughput.py --steps 60 --repeats 5 --out benchmarks/results/llm_throughput_tiny_cpu.json

``--preset paper --device cuda``: a Mistral-7B-shaped LLM (the ``paper`` preset's ``base``, random weights,
the shapes-world text tokenizer inside a 32000+ vocabulary) in bfloat16 with gradient checkpointing, and the
paper video tokenizer (ViT-H, random weights) for ``reencode``; needs a GPU and refuses otherwise.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from _timing import load_avg, provenance, ratio, summarize

logger = logging.getLogger("llm_throughput")

SETTINGS = ("cache", "reencode", "gen", "gen_nogmm", "head")


def build_llm(preset: str, device: torch.device):
    """The Divot-LLM of ``preset`` on ``device``: tiny in float32; paper bf16 + gradient checkpointing."""
    from divot.llm import DivotLLM

    if preset == "tiny":
        return DivotLLM.from_preset("tiny").to(device)
    from transformers import AutoModelForCausalLM

    from divot.llm.config import llm_preset
    from divot.llm.text_tokenizer import build_shapes_tokenizer
    from divot.llm.tokens import SPECIAL_TOKENS

    config = llm_preset("paper")
    tokenizer = build_shapes_tokenizer()  # ids < 32000: the 7B-shaped embeddings hold them
    vocab = max(config.base.vocab_size + len(SPECIAL_TOKENS), len(tokenizer))
    with torch.device(device):
        llm = AutoModelForCausalLM.from_config(config.base.to_hf(vocab_size=vocab), dtype=torch.bfloat16)
        model = DivotLLM(config, llm, tokenizer)  # the projections are built on the device too
    model.to(device=device, dtype=torch.bfloat16)
    model.llm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return model


class Bench:
    """One model + optimiser; a step of each setting on global batch number ``g``."""

    def __init__(self, args, tmp: Path, device: torch.device):
        from divot.data.shapes.generate import generate_dataset
        from divot.data.token_cache import TokenCache, build_token_cache
        from divot.llm import LLMCollator, SequenceBuilder
        from divot.tokenizer import VideoTokenizer
        from divot.training.engine import TorchEngine
        from divot.training.llm_data import SampleBuilder, read_records
        from divot.training.optim import OptimConfig

        self.args, self.device = args, device
        torch.manual_seed(0)
        self.tokenizer = VideoTokenizer.from_preset(args.preset).to(device).eval().requires_grad_(False)
        self.model = build_llm(args.preset, device).train()
        data = generate_dataset(tmp / "data", num=args.videos, seed=0, num_stories=0, progress=False)
        self.videos = Path(data["video_dir"])
        build_token_cache(self.tokenizer, self.videos, tmp / "cache", max_clips=args.max_clips,
                          precision=args.tokenizer_precision, progress=False)
        self.cache = TokenCache(tmp / "cache", expect_tokenizer=self.tokenizer)
        self.records = read_records(data["metadata"])
        builder = SequenceBuilder.from_config(self.model.tokenizer, self.model.config)
        self.make_sample = SampleBuilder(builder, args.max_clips)
        self.collate = LLMCollator(builder.ids.pad, self.model.config.num_queries)
        named = [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]
        self.engine = TorchEngine(self.model, named, OptimConfig(lr=1e-5, warmup_steps=0, max_steps=10**6),
                                  zero_unused_grads=True)  # as train/llm.py: AdamW, clipping, schedule
        self.precision = "bf16" if args.preset == "paper" else "fp32"
        self.head_params = sum(p.numel() for p in self.model.gmm_head.parameters())
        self.total_params = sum(p.numel() for p in self.model.parameters())

    def records_of(self, g: int) -> list:
        b = self.args.batch
        return [self.records[(g * b + j) % len(self.records)] for j in range(b)]

    def clip_tokens(self, record, source: str) -> torch.Tensor:
        """(clips, q, d) float32 of one video: a cache lookup, or decode + tokenize under no_grad."""
        if source == "cache":
            return self.cache[record.video_id].float()
        from divot.data.loading import load_sparse_clips

        clips = load_sparse_clips(self.videos / f"{record.video_id}.mp4", size=self.tokenizer.config.frame_size,
                                  max_clips=self.args.max_clips)  # (clips, 5, 3, size, size)
        with torch.no_grad():
            return self.tokenizer.encode(clips, precision=self.args.tokenizer_precision)

    def batch(self, g: int, fmt: str, source: str) -> dict[str, torch.Tensor]:
        samples = [self.make_sample(fmt, r, self.clip_tokens(r, source), random.Random(f"0-{g}-{j}"))
                   for j, r in enumerate(self.records_of(g))]
        return {k: v.to(self.device, non_blocking=True) for k, v in self.collate(samples).items()}

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16")

    def _sync(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize()

    def step(self, g: int, setting: str) -> tuple[float, float, int]:
        """One training step of ``setting`` on batch ``g``: (data seconds, model seconds, real tokens)."""
        t0 = time.perf_counter()
        fmt = "caption" if setting in ("cache", "reencode") else "generation"
        batch = self.batch(g, fmt, "reencode" if setting == "reencode" else "cache")
        if setting == "gen_nogmm":  # same sequence and 4D mask (collated with the queries), no GMM targets
            batch["gen_mask"] = torch.zeros_like(batch["gen_mask"])
            batch["gen_clips"] = batch["gen_clips"][:0]
        self._sync()
        t1 = time.perf_counter()
        if setting == "head":
            self._head_step(batch)
        else:
            with self._autocast():
                out = self.engine(batch)
            self.engine.backward(out["loss"])
            self.engine.step()
        self._sync()
        return t1 - t0, time.perf_counter() - t1, int(batch["attention_mask"].sum())

    def _head_step(self, batch: dict) -> None:
        """Output projection + GMM NLL, forward + backward, on (n*q, h) hidden states of the query positions."""
        n = int(batch["gen_mask"].sum())
        hidden = torch.randn(n, self.model.config.hidden_size, device=self.device, dtype=self.model.dtype,
                             requires_grad=True)
        with self._autocast():
            loss = self.model.gmm_head.nll(hidden, batch["gen_clips"].reshape(n, -1))
        loss.backward()
        self.model.zero_grad(set_to_none=True)


def measure(bench: Bench, args) -> dict:
    """Warm-up, then ``repeats`` rounds; each round runs ``steps`` steps of every setting on the same batches."""
    for setting in args.settings:
        for i in range(args.warmup):
            bench.step(i, setting)
    runs: dict[str, list[dict]] = {s: [] for s in args.settings}
    for r in range(args.repeats):
        for setting in args.settings:  # interleaved: every setting once per round
            data = model = tokens = 0.0
            for i in range(args.steps):
                d, m, n = bench.step(args.warmup + r * args.steps + i, setting)
                data, model, tokens = data + d, model + m, tokens + n
            total = data + model
            runs[setting].append({"seconds": total, "data_seconds": data, "model_seconds": model,
                                  "steps_per_s": args.steps / total,
                                  "tokens_per_s": tokens / total, "tokens": tokens})
            logger.info("round %d %-9s %6.2f steps/s %8.0f tokens/s (data %.0f%%)", r, setting,
                        args.steps / total, tokens / total, 100 * data / total)
    return runs


def summarize_runs(runs: dict[str, list[dict]], args) -> tuple[list[dict], dict, dict]:
    """Rows (medians over the rounds, with every round's seconds per step and their spread), the ratios as
    before (per round, then the median) and each ratio's detail (ratio of medians, lowest / highest round)."""
    rows = []
    for setting, rs in runs.items():
        per_step = summarize([x["seconds"] / args.steps for x in rs])
        rows.append({"setting": setting,
                     "steps_per_s": statistics.median(x["steps_per_s"] for x in rs),
                     "steps_per_s_min": min(x["steps_per_s"] for x in rs),
                     "steps_per_s_max": max(x["steps_per_s"] for x in rs),
                     "tokens_per_s": statistics.median(x["tokens_per_s"] for x in rs),
                     "s_per_step": per_step["median"],
                     "model_s_per_step": statistics.median(x["model_seconds"] / args.steps for x in rs),
                     "data_fraction": statistics.median(x["data_seconds"] / x["seconds"] for x in rs),
                     "tokens_per_step": rs[0]["tokens"] / args.steps, "s_per_step_timing": per_step,
                     "model_s_per_step_timing": summarize([x["model_seconds"] / args.steps for x in rs]),
                     "repeats": rs})

    def paired(num: str, den: str, key: str) -> dict | None:  # rounds ran interleaved: side by side
        if num not in runs or den not in runs:
            return None
        return ratio([a[key] for a in runs[num]], [b[key] for b in runs[den]])

    detail = {  # the GMM shares are of the model step (forward + backward + AdamW), data preparation excluded
        "reencode_over_cache_time": paired("reencode", "cache", "seconds"),
        "reencode_over_cache_model_time": paired("reencode", "cache", "model_seconds"),
        "gen_nogmm_over_gen_model_time": paired("gen_nogmm", "gen", "model_seconds"),
        "head_fraction_of_gen_step": paired("head", "gen", "model_seconds"),
    }
    no_gmm = detail["gen_nogmm_over_gen_model_time"]
    if no_gmm is not None:  # 1 - ratio: the lowest share comes from the highest ratio
        detail["gmm_fraction_of_gen_step"] = {"value": 1 - no_gmm["median_of_ratios"],
                                              "one_minus_ratio_of_medians": 1 - no_gmm["ratio_of_medians"],
                                              "min": 1 - no_gmm["max"], "max": 1 - no_gmm["min"]}
    ratios = {
        "reencode_over_cache_time": _median_of(detail["reencode_over_cache_time"]),
        "reencode_over_cache_model_time": _median_of(detail["reencode_over_cache_model_time"]),
        "gmm_fraction_of_gen_step": None if no_gmm is None else 1 - no_gmm["median_of_ratios"],
        "head_fraction_of_gen_step": _median_of(detail["head_fraction_of_gen_step"]),
    }
    return rows, ratios, detail


def _median_of(detail: dict | None) -> float | None:
    return None if detail is None else detail["median_of_ratios"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=("tiny", "paper"), default="tiny")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--batch", type=int, default=8, help="samples per step (default 8)")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per setting per round (default 20)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps per setting first (default 3)")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved rounds, at least 3 for a spread; "
                        "medians reported (default 5)")
    parser.add_argument("--videos", type=int, default=64, help="shapes-world videos (default 64)")
    parser.add_argument("--max-clips", type=int, default=20, help="clips per video (default 20)")
    parser.add_argument("--tokenizer-precision", default="auto", help="for the cache and reencode (default auto)")
    parser.add_argument("--settings", nargs="+", choices=SETTINGS, default=list(SETTINGS))
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = parser.parse_args(argv)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if args.preset == "paper" and (device.type != "cuda" or not torch.cuda.is_available()):
        parser.error("--preset paper builds a 7B-parameter model (bf16, gradient checkpointing, AdamW: ~60 GB); "
                     "it needs --device cuda on a machine with a GPU, and none is available here")
    if args.repeats < 1 or args.steps < 1:
        parser.error(f"--repeats and --steps must be >= 1, got {args.repeats}, {args.steps}")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(args.threads)
    record = provenance(argv, __file__, str(device))

    with tempfile.TemporaryDirectory() as tmp:
        bench = Bench(args, Path(tmp), device)
        runs = measure(bench, args)
    rows, ratios, ratio_detail = summarize_runs(runs, args)
    cfg = bench.model.config
    result = {
        "preset": args.preset, "device": str(device), "precision": bench.precision,
        "gradient_checkpointing": args.preset == "paper", "batch": args.batch, "steps": args.steps,
        "warmup": args.warmup, "repeats": args.repeats, "threads": torch.get_num_threads(),
        "tokenizer_precision": args.tokenizer_precision, "videos": args.videos,
        "clip": {"num_queries": cfg.num_queries, "token_dim": cfg.token_dim, "gmm_components": cfg.gmm_components,
                 "gmm_out_dim": cfg.out_dim},
        "params": {"total": bench.total_params, "gmm_head": bench.head_params},
        "python": sys.version.split()[0], "torch": torch.__version__, **record, "load_avg_after": load_avg(),
        "ratios": ratios, "ratio_detail": ratio_detail, "rows": rows,
    }
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    print("| setting | steps/s (min-max) | tokens/s | s/step | model s/step | tokens/step | data share |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['setting']} | {r['steps_per_s']:.2f} ({r['steps_per_s_min']:.2f}-{r['steps_per_s_max']:.2f}) | "
              f"{r['tokens_per_s']:.0f} | {r['s_per_step']:.4f} | {r['model_s_per_step']:.4f} | "
              f"{r['tokens_per_step']:.0f} | {100 * r['data_fraction']:.0f}% |")
    for name, d in ratio_detail.items():
        if d is not None:
            value = d.get("median_of_ratios", d.get("value"))
            print(f"{name}: {value:.3f} (rounds {d['min']:.3f}-{d['max']:.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
