"""The GPU check: paper-size speed and memory of every model on one GPU, random weights, bfloat16, in one run.

Parts (``_gpu_parts``), each guarded: a failure or a part past its time budget is recorded in the JSON (status,
error) and the next part still runs; the JSON is rewritten after every part, so a run killed from outside keeps
what it measured.

- ``matmul_peak``  bf16 matrix product (8192^3 at paper size): the measured ceiling, TFLOP/s;
- ``tokenizer``    ``VideoTokenizer.encode`` clips/s, FLOPs per clip (``FlopCounterMode``), fraction of the peak;
- ``egoschema``    five-way questions over the 20 clips of a synthetic 180 s video (320x240, 10 fps), scored as
                   ``divot eval egoschema`` scores them; questions/s with cached clip tokens and decoding +
                   tokenizing the video for every question;
- ``detokenizer``  s/clip of ``Detokenizer.decode`` with the reference DDIM-50 sampler and dpmsolver++ 25 steps;
- ``llm_train``    Divot-LLM (Mistral-7B shapes) training steps on 4 x 2048-token sequences: tokens/s and MFU
                   (model FLOPs 6N + 12 L d s per token over the measured peak; the memory choice is in the JSON).

Per part: wall seconds, ``torch.cuda.max_memory_allocated`` (reset between parts; measured after the models are
built, with the build's own peak and the weights' size beside it). The last lines printed are a Markdown table
row for ``benchmarks/RESULTS.md`` (header first). ``--size tiny --device cpu`` runs the same code on the tiny
presets' widths in seconds (the test's setting); ``benchmarks/gpu_check.sh`` is the one command for a GPU machine.

    python benchmarks/gpu_check.py --size paper --device cuda --json benchmarks/results/gpu_check.json
    python benchmarks/gpu_check.py --size tiny --device cpu --threads 1 \\
        --json benchmarks/results/gpu_check_cpu_tiny.json
"""

from __future__ import annotations

import argparse
import copy
import gc
import importlib
import json
import logging
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from _gpu_parts import PARTS
from _timing import load_avg, provenance

logger = logging.getLogger("gpu_check")

GIB = 2**30
DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "gpu_check.json"
# Dense bf16 matrix rate by the vendor's datasheets (TFLOP/s), for an MFU beside the one over the measured peak.
DATASHEET_BF16_TFLOPS = (("H100 PCIe", 756.0), ("H100", 989.4), ("H200", 989.4))


@dataclass
class Settings:
    """Sizes, repeats and time budgets (seconds) of one run."""

    size: str
    matmul_n: int
    matmul_inner: int
    matmul_rounds: int
    tokenizer_batch: int
    tokenizer_rounds: int
    video_seconds: float
    video_fps: float
    video_width: int
    video_height: int
    max_clips: int
    questions_cached: int
    questions_video: int
    eval_rounds: int
    detok_reference_steps: int
    detok_fast: tuple[str, int]
    detok_rounds: int
    llm_batch: int
    llm_seq_len: int
    llm_clips: int
    llm_warmup_steps: int
    llm_steps: int
    llm_layers: int | None
    budgets: dict[str, float]
    total_budget: float


SIZES = {
    "paper": Settings(
        size="paper", matmul_n=8192, matmul_inner=10, matmul_rounds=5, tokenizer_batch=16, tokenizer_rounds=5,
        video_seconds=180, video_fps=10, video_width=320, video_height=240, max_clips=20, questions_cached=16,
        questions_video=2, eval_rounds=3, detok_reference_steps=50, detok_fast=("dpmsolver++", 25), detok_rounds=2,
        llm_batch=4, llm_seq_len=2048, llm_clips=8, llm_warmup_steps=2, llm_steps=4, llm_layers=None,
        budgets={"matmul_peak": 20, "tokenizer": 45, "egoschema": 120, "detokenizer": 100, "llm_train": 120},
        total_budget=430),
    # The same code on the tiny presets' widths (the de-tokenizer: tiny U-Net + tiny VAE) and little work, for
    # the test: bf16 convolutions are slow on CPUs without bf16 units, so the samplers take 2 steps there.
    "tiny": Settings(
        size="tiny", matmul_n=256, matmul_inner=2, matmul_rounds=2, tokenizer_batch=2, tokenizer_rounds=1,
        video_seconds=6, video_fps=8, video_width=64, video_height=48, max_clips=20, questions_cached=2,
        questions_video=1, eval_rounds=1, detok_reference_steps=2, detok_fast=("dpmsolver++", 2), detok_rounds=1,
        llm_batch=2, llm_seq_len=128, llm_clips=2, llm_warmup_steps=1, llm_steps=1, llm_layers=None,
        budgets={"matmul_peak": 20, "tokenizer": 30, "egoschema": 60, "detokenizer": 60, "llm_train": 60},
        total_budget=180),
}


class PartTimeout(BaseException):
    """A part ran past its time budget (raised from the run's SIGALRM handler; a BaseException, like
    KeyboardInterrupt, so that no library's ``except Exception`` swallows it)."""


def caused_by_timeout(err: BaseException | None) -> bool:
    """True when ``err`` is a ``PartTimeout`` or was raised while handling one (a library may wrap it)."""
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, PartTimeout):
            return True
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return False


@dataclass
class PartContext:
    """What a part needs: the device, the size settings, its deadline (``time.perf_counter`` seconds)."""

    device: torch.device
    settings: Settings
    deadline: float
    build_stats: dict = field(default_factory=dict)

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def time_left(self) -> float:
        return self.deadline - time.perf_counter()

    def mark_built(self) -> None:
        """Record the memory the built models hold and the build's peak, then start the measurement's peak."""
        if self.device.type == "cuda":
            self.sync()
            self.build_stats = {"weights_gib": torch.cuda.memory_allocated(self.device) / GIB,
                                "build_peak_mem_gib": torch.cuda.max_memory_allocated(self.device) / GIB}
            torch.cuda.reset_peak_memory_stats(self.device)

    def autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    @staticmethod
    def timed_out(err: BaseException) -> bool:
        return caused_by_timeout(err)

    def rounds(self, calls: dict[str, Callable[[], object]], max_rounds: int) -> dict[str, list[float]]:
        """One untimed call of each, then up to ``max_rounds`` rounds (every call once per round, in turn): the
        seconds of each call; stops early when another round would pass the deadline (one round always runs)."""
        for fn in calls.values():
            fn()
        self.sync()
        runs: dict[str, list[float]] = {name: [] for name in calls}
        for r in range(max_rounds):
            start = time.perf_counter()
            for name, fn in calls.items():
                t0 = time.perf_counter()
                fn()
                self.sync()
                runs[name].append(time.perf_counter() - t0)
            if r + 1 < max_rounds and self.time_left() < 1.5 * (time.perf_counter() - start):
                break
        return runs


def _alarm(signum, frame):
    raise PartTimeout


def run_part(name: str, device: torch.device, settings: Settings, end: float) -> dict:
    """Run one part under its budget (cut to what is left of the run): its result, or its error, plus wall
    seconds and memory. A part with under 2 s left is skipped."""
    start = time.perf_counter()
    budget = min(settings.budgets[name], end - start)
    if budget < 2:
        return {"status": "skipped", "error": f"no time left in the run's budget of {settings.total_budget:.0f} s"}
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    ctx = PartContext(device, settings, start + budget)
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, budget)
    timeout = {"status": "timeout", "error": f"ran past its budget of {budget:.0f} s"}
    try:
        record = {"status": "ok", **PARTS[name](ctx)}
    except PartTimeout:
        record = timeout
    except Exception as err:  # any failure of one part is recorded; the others still run
        if caused_by_timeout(err):  # a library wrapped the timeout (e.g. a lazy import that was cut short)
            record = timeout
        else:
            record = {"status": "error", "error": f"{type(err).__name__}: {err}"[:2000],
                      "traceback": traceback.format_exc()[-4000:]}
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    record.update(seconds=time.perf_counter() - start, budget_s=budget, **ctx.build_stats)
    record["peak_mem_gib"] = torch.cuda.max_memory_allocated(device) / GIB if device.type == "cuda" else None
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return record


# What each part imports (timed before any part's clock starts, so a part's budget is its own work).
IMPORTS = {
    "matmul_peak": (),
    "tokenizer": ("divot.tokenizer",),  # divot imports diffusers
    "egoschema": ("transformers", "divot.chat", "divot.eval.multiple_choice", "divot.llm"),
    "detokenizer": ("divot.diffusion",),
    "llm_train": ("transformers", "divot.llm", "divot.training.engine"),
}


def import_libraries(parts: list[str]) -> dict:
    """Import what ``parts`` use: seconds, or the error (the parts that need the missing module then fail)."""
    start = time.perf_counter()
    try:
        for name in dict.fromkeys(m for part in parts for m in IMPORTS[part]):
            importlib.import_module(name)
        return {"status": "ok", "seconds": time.perf_counter() - start}
    except Exception as err:
        return {"status": "error", "seconds": time.perf_counter() - start, "error": f"{type(err).__name__}: {err}"}


def derive(parts: dict, gpu_name: str | None) -> None:
    """Fractions of the measured peak (and of the datasheet rate, on a known GPU), in place."""
    peak = parts.get("matmul_peak", {})
    peak_tflops = peak.get("tflops") if peak.get("status") == "ok" else None
    datasheet = next((rate for key, rate in DATASHEET_BF16_TFLOPS if gpu_name and key in gpu_name), None)
    for name, key in (("tokenizer", "fraction_of_peak"), ("llm_train", "mfu")):
        part = parts.get(name, {})
        if part.get("status") != "ok":
            continue
        part[key] = part["tflops_achieved"] / peak_tflops if peak_tflops else None
        if datasheet:
            part[f"{key}_vs_datasheet"] = part["tflops_achieved"] / datasheet
            part["datasheet_bf16_tflops"] = datasheet


def _cell(part: dict | None, text) -> str:
    if part is None:
        return "-"
    if part.get("status") != "ok":
        return part.get("status", "-")
    try:
        return text(part)
    except (KeyError, TypeError):
        return "?"


def _seconds(sampler: dict) -> str:
    return f"{sampler['s_per_clip']:.3g}" if "s_per_clip" in sampler else "error"


def markdown(result: dict) -> tuple[str, str]:
    """The header (two lines) and the row of the RESULTS table."""
    p = result["parts"]
    get = p.get
    header = ("| date | machine | size | bf16 matmul TFLOP/s | tokenizer clips/s (of peak) | EgoSchema q/s: cached "
              "/ from video | de-tokenizer s/clip: reference DDIM / fast | LLM train tokens/s (MFU) | peak GiB: tokenizer "
              "/ EgoSchema / de-tokenizer / LLM | JSON |\n" + "|---" * 10 + "|")

    def mem(name):
        part = get(name)
        return "-" if not part or part.get("peak_mem_gib") is None else f"{part['peak_mem_gib']:.1f}"

    def pct(x):
        return "-" if x is None else f"{100 * x:.0f}%"

    machine = result["machine"].get("gpu") or result["machine"]["cpu"]
    row = " | ".join([
        result["date"][:10], machine, f"{result['size']} ({result['device']})",
        _cell(get("matmul_peak"), lambda x: f"{x['tflops']:.3g}"),
        _cell(get("tokenizer"), lambda x: f"{x['clips_per_s']:.3g} ({pct(x.get('fraction_of_peak'))})"),
        _cell(get("egoschema"), lambda x: f"{x['cached']['questions_per_s']:.3g} / "
                                          f"{x['from_video']['questions_per_s']:.3g}"),
        _cell(get("detokenizer"), lambda x: f"{_seconds(x['reference'])} / {_seconds(x['fast'])} (DDIM "
                                            f"{x['reference']['steps']}, {x['fast']['sampler']} {x['fast']['steps']})"),
        _cell(get("llm_train"), lambda x: f"{x['tokens_per_s']:.0f} ({pct(x.get('mfu'))})"),
        " / ".join(mem(n) for n in ("tokenizer", "egoschema", "detokenizer", "llm_train")),
        f"`{result['json']}`",
    ])
    return header, f"| {row} |"


def write_json(path: Path, result: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=1) + "\n")
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="paper")
    parser.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    parser.add_argument("--parts", nargs="+", choices=list(PARTS), default=list(PARTS))
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help=f"result file (default {DEFAULT_JSON})")
    parser.add_argument("--total-budget", type=float, default=None,
                        help="seconds for all parts together, imports not counted (default: 430 at paper "
                             "size, 180 tiny)")
    parser.add_argument("--llm-layers", type=int, default=None,
                        help="decoder layers of the trained LLM (default: the preset's, 32 at paper size)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's choice; 1 on a shared CPU-only machine)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available here")
    if args.size == "paper" and device.type != "cuda":
        parser.error("--size paper builds a 7B-parameter LLM and trains it: it needs --device cuda")
    settings = copy.deepcopy(SIZES[args.size])
    if args.total_budget is not None:
        settings.total_budget = args.total_budget
    if args.llm_layers is not None:
        settings.llm_layers = args.llm_layers
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    result = {"size": args.size, "device": str(device), "dtype": "bfloat16 weights; bfloat16 autocast around the tokenizer, the "
              "de-tokenizer's U-Net and condition resampler and the training step",
              "weights": "random", "json": _relative(args.json),
              "memory": "per part: torch.cuda.max_memory_allocated after the models are built (peak_mem_gib), "
                        "memory held by the built models (weights_gib) and the build's own peak (build_peak_mem_gib)",
              **provenance(argv, __file__, str(device)), "settings": asdict(settings),
              **({"note": "on a CPU without bf16 units the bf16 matmul is no ceiling: fractions of it above 1 "
                          "are expected"} if device.type == "cpu" else {}),
              "parts": {name: {"status": "pending"} for name in args.parts}}
    result["imports"] = import_libraries(args.parts)
    logger.info("imports: %s in %.1f s", result["imports"]["status"], result["imports"]["seconds"])
    end = time.perf_counter() + settings.total_budget
    for name in args.parts:
        logger.info("%s ...", name)
        result["parts"][name] = {"status": "running"}  # what a run stopped from outside was doing
        write_json(args.json, result)
        result["parts"][name] = record = run_part(name, device, settings, end)
        logger.info("%s: %s in %.1f s%s", name, record["status"], record.get("seconds", 0.0),
                    f" ({record['error']})" if record.get("error") else "")
        derive(result["parts"], result["machine"].get("gpu"))
        write_json(args.json, result)
    result["load_avg_after"] = load_avg()
    result["markdown_header"], result["markdown_row"] = markdown(result)
    write_json(args.json, result)
    print(result["markdown_header"])
    print(result["markdown_row"])
    return 0 if all(p["status"] == "ok" for p in result["parts"].values()) else 1


def _relative(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path(__file__).resolve().parents[1]))
    except ValueError:
        return str(path)


if __name__ == "__main__":
    sys.exit(main())
