"""What the speed benchmarks share: repeated timings and their spread, ratios of timings, and a record of where,
when and how a measurement was taken.

Every speed script writes, per setting, ``summarize(runs)``: each repeat's seconds (``runs``), their median, min
and max, and the spread ``(max - min) / median``; and, per ratio of two settings, ``ratio(num, den)``: the ratio
of the medians and the lowest and highest ratio the repeats allow. ``provenance(argv)`` goes into every JSON:
the machine (CPU model, cores, torch threads, torch version, GPU), the date, the exact command line, the git
commit, and the load average (a load near the core count while measuring means the machine was not quiet).

The scripts run as ``python benchmarks/NAME.py``, so this module is imported as ``_timing`` (the script's folder
is first on ``sys.path``).
"""

from __future__ import annotations

import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def summarize(seconds: Sequence[float]) -> dict:
    """Every repeat's seconds and their median, min, max and spread ((max - min) / median)."""
    runs = [float(s) for s in seconds]
    if not runs:
        raise ValueError("summarize needs at least one timing")
    median = statistics.median(runs)
    return {"runs": runs, "median": median, "min": min(runs), "max": max(runs),
            "spread": (max(runs) - min(runs)) / median if median > 0 else None, "repeats": len(runs)}


def ratio(numerator: Sequence[float], denominator: Sequence[float], paired: bool = True) -> dict:
    """``numerator / denominator`` of two settings' timings (a speed-up when the numerator is the slower one).

    ``ratio_of_medians``: median(numerator) / median(denominator), the number to quote. ``paired``: the repeats
    were interleaved (repeat i of both settings ran back to back), so the per-repeat ratios are meaningful;
    ``min`` / ``max`` / ``median_of_ratios`` are over them. Unpaired, ``min`` and ``max`` are the widest the
    repeats allow: min(numerator) / max(denominator) and max(numerator) / min(denominator)."""
    num, den = [float(x) for x in numerator], [float(x) for x in denominator]
    if not num or not den:
        raise ValueError("ratio needs timings on both sides")
    out = {"ratio_of_medians": statistics.median(num) / statistics.median(den), "paired": paired}
    if paired:
        if len(num) != len(den):
            raise ValueError(f"paired ratio needs as many repeats on both sides, got {len(num)} and {len(den)}")
        per_repeat = [a / b for a, b in zip(num, den, strict=True)]
        out.update(per_repeat=per_repeat, median_of_ratios=statistics.median(per_repeat), min=min(per_repeat),
                   max=max(per_repeat))
    else:
        out.update(min=min(num) / max(den), max=max(num) / min(den))
    return out


def interleaved(settings: dict[str, Callable[[], object]], repeats: int, warmup: int = 1,
                sync: Callable[[], None] | None = None) -> tuple[dict[str, list[float]], dict[str, object]]:
    """Time each setting ``repeats`` times, taking turns: repeat r runs every setting once, in order, so that
    a slow spell of the machine hits all settings alike and ratios can be taken per repeat.

    ``warmup`` untimed calls of every setting come first. ``sync`` (e.g. ``torch.cuda.synchronize``) runs
    before each clock read. Returns the seconds per setting and each setting's last return value."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    for fn in settings.values():
        for _ in range(warmup):
            fn()
    runs: dict[str, list[float]] = {name: [] for name in settings}
    last: dict[str, object] = {}
    for _ in range(repeats):
        for name, fn in settings.items():
            if sync:
                sync()
            t0 = time.perf_counter()
            last[name] = fn()
            if sync:
                sync()
            runs[name].append(time.perf_counter() - t0)
    return runs, last


def command_line(argv: Sequence[str] | None, script: str) -> str:
    """The command as typed: ``sys.argv`` when run from a shell, else the script and ``argv`` of ``main``."""
    args = sys.argv[1:] if argv is None else list(argv)
    return shlex.join(["python", _relative(script), *args])


def machine(device: str | None = None) -> dict:
    """CPU model, cores (all / usable by this process), torch threads and version, Python, GPU name."""
    import torch

    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                 if line.startswith("model name")]
        cpu = names[0] if names else cpu
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    out = {"cpu": cpu, "cpu_count": os.cpu_count(), "cpu_usable": usable, "torch_threads": torch.get_num_threads(),
           "torch": torch.__version__, "python": platform.python_version(), "platform": platform.platform()}
    if device is not None and str(device).startswith("cuda") and torch.cuda.is_available():
        out["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return out


def git_commit() -> dict:
    """The commit the benchmark ran on, and whether tracked files differed from it."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    try:
        return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "dirty": None}


def provenance(argv: Sequence[str] | None, script: str, device: str | None = None) -> dict:
    """What every result file records: date, command, machine, commit, and the load average (1, 5, 15 min)
    before the measurement; scripts add ``load_avg_after`` when they finish."""
    return {"date": time.strftime("%Y-%m-%d %H:%M:%S %z"), "command": command_line(argv, script),
            "machine": machine(device), "git": git_commit(), "load_avg_before": load_avg()}


def load_avg() -> list[float] | None:
    """The system load average over 1, 5 and 15 minutes (None where the OS has none)."""
    return list(os.getloadavg()) if hasattr(os, "getloadavg") else None


def _relative(path: str) -> str:
    try:
        return str(Path(path).resolve().relative_to(ROOT))
    except ValueError:
        return str(path)
