"""Start-up time: ``divot --help``, ``divot data shapes --help`` and ``import divot``, against ``import torch``.

Every measurement is a fresh Python process (so nothing is imported yet; the OS file cache is warm after the
untimed warm-up round). ``--repeats`` rounds run every setting once, in turn, so that a slow spell of the machine
hits all of them alike; the JSON holds each setting's seconds (every round, median, min, max, spread) and each
ratio to ``import torch`` (ratio of medians, with the per-round min and max). Goals: ``divot --help`` <= 1.0x and
``import divot`` <= 1.3x the time of ``import torch``.

One more untimed process per setting lists which heavy libraries it left in ``sys.modules`` (torch, diffusers,
transformers, timm, deepspeed, datasets, ...): a fast start-up that still loads them would be luck.

    python benchmarks/startup_time.py --repeats 5
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from _timing import ROOT, interleaved, load_avg, provenance, ratio, summarize

HEAVY = ("torch", "numpy", "diffusers", "transformers", "timm", "deepspeed", "datasets", "peft", "av", "decord",
         "PIL", "scipy", "sklearn")

# The CLI runs as the console script does (``from divot.cli import main; sys.exit(main())``).
CLI = "import sys; from divot.cli import main; sys.exit(main({argv!r}))"

# setting -> Python source run by ``python -c``; the first one is the denominator of every ratio.
SETTINGS = {
    "import torch": "import torch",
    "python (interpreter only)": "pass",
    "import divot": "import divot",
    "divot --help": CLI.format(argv=["--help"]),
    "divot data shapes --help": CLI.format(argv=["data", "shapes", "--help"]),
}
BASELINE = "import torch"
GOALS = {"divot --help": 1.0, "import divot": 1.3}


def run_source(source: str) -> None:
    """Run ``python -c source`` in a fresh process from the repository root; fail loudly on a non-zero exit."""
    proc = subprocess.run([sys.executable, "-c", source], cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"python -c {source!r} exited with {proc.returncode}: {proc.stderr[-2000:]}")


def loaded_heavy(source: str) -> list[str]:
    """The HEAVY libraries in ``sys.modules`` when ``source`` has run (``--help`` exits: read them at exit)."""
    probe = ("import atexit, json, sys\n"
             f"atexit.register(lambda: sys.stderr.write('\\nHEAVY ' + json.dumps(sorted(m for m in {HEAVY!r} "
             "if m in sys.modules)) + '\\n'))\n"
             f"{source}\n")
    proc = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True)
    for line in reversed(proc.stderr.splitlines()):
        if line.startswith("HEAVY "):
            return json.loads(line[len("HEAVY "):])
    raise RuntimeError(f"no module list from python -c {source!r}: {proc.stderr[-2000:]}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=5, help="timed rounds over all settings (default 5)")
    p.add_argument("--out", default=None, help="JSON file (default benchmarks/results/startup_time.json)")
    args = p.parse_args(argv)
    out = Path(args.out) if args.out else Path(__file__).parent / "results" / "startup_time.json"

    record = provenance(argv, __file__)
    calls = {name: (lambda source=source: run_source(source)) for name, source in SETTINGS.items()}
    started = time.perf_counter()
    runs, _ = interleaved(calls, args.repeats, warmup=1)
    modules = {name: loaded_heavy(source) for name, source in SETTINGS.items()}

    settings, ratios = {}, {}
    for name, source in SETTINGS.items():
        settings[name] = {"python_c": source, "heavy_modules_loaded": modules[name], **summarize(runs[name])}
        sys.stderr.write(f"{name}: {settings[name]['median']:.2f} s (median of {args.repeats}; "
                         f"{', '.join(f'{x:.2f}' for x in runs[name])}); loads {', '.join(modules[name]) or '-'}\n")
    for name in SETTINGS:
        if name == BASELINE:
            continue
        ratios[f"{name} / {BASELINE}"] = r = ratio(runs[name], runs[BASELINE])
        goal = GOALS.get(name)
        if goal is not None:
            r["goal"] = goal
            r["meets_goal"] = r["ratio_of_medians"] <= goal
        sys.stderr.write(f"{name} / {BASELINE}: {r['ratio_of_medians']:.2f}x (per round {r['min']:.2f}-"
                         f"{r['max']:.2f})" + (f", goal <= {goal}x" if goal is not None else "") + "\n")

    record.update(repeats=args.repeats, python=sys.executable, seconds_total=time.perf_counter() - started,
                  settings=settings, ratios=ratios, load_avg_after=load_avg())
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    sys.stderr.write(f"wrote {out}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
