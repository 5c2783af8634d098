"""Peak memory and time of loading a saved part: one copy of the weights, straight into the dtype asked for.

For each part (the paper-size video tokenizer, 3.2 GB in float32, and the paper-size de-tokenizer, 6.4 GB) a
random-weight checkpoint is written once (kept under ``--work``), then every measurement runs in a fresh child
process that imports what loading needs, records its resident memory (``VmRSS``), loads, and reports its peak
(``VmHWM``) above that baseline:

- ``read``: reading the file's bytes into one buffer (the floor for any loader; the time ratio's denominator);
- ``fp32`` / ``bf16``: ``from_pretrained(dir, dtype=...)`` (meta-device build, one tensor at a time);
- ``bf16 (load then cast)``: what loading did before (every tensor at the file's dtype, then ``.to(bf16)``),
  for contrast.

Targets (issue: memory-aware loading): bf16 from an fp32 file <= 0.75x the file's bytes above the baseline, fp32
<= 1.2x, and load time <= 3x the time to read the file. The file is read once before measuring, so every row
reads from the page cache (a cold disk adds the same read time to each).

    python benchmarks/load_memory.py --parts tokenizer detokenizer --repeats 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

from _timing import ROOT, provenance

PARTS = {"tokenizer": ("divot.tokenizer", "VideoTokenizer"), "detokenizer": ("divot.diffusion", "Detokenizer")}
MODES = ("read", "fp32", "bf16", "bf16 (load then cast)")
TARGETS = {"fp32": 1.2, "bf16": 0.75}

CHILD = r"""
import json, sys, time
import torch
mode, module, cls_name, directory = sys.argv[1:5]
cls = getattr(__import__(module, fromlist=[cls_name]), cls_name)
import accelerate, safetensors.torch  # noqa: F401  (imported before the baseline: not part of loading)
from divot.weights_io import load_safetensors  # noqa: F401

def status(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) * 1024
base = status("VmRSS:")
start = time.perf_counter()
weights = directory + "/model.safetensors"
if mode == "read":
    import os
    data = bytearray(os.path.getsize(weights))
    with open(weights, "rb", buffering=0) as f:
        view, done = memoryview(data), 0
        while done < len(data):
            done += f.readinto(view[done:])
elif mode == "fp32":
    model = cls.from_pretrained(directory, dtype=torch.float32)
elif mode == "bf16":
    model = cls.from_pretrained(directory, dtype=torch.bfloat16)
else:  # the previous loader: every tensor at the file's dtype, then a cast of the whole model
    from accelerate import init_empty_weights
    from safetensors.torch import load_file
    with init_empty_weights(include_buffers=False):
        model = cls(cls.load_config(directory))
    model.load_saved_state_dict(load_file(weights), where=weights, assign=True)
    model.to(torch.bfloat16)
seconds = time.perf_counter() - start
print(json.dumps({"baseline_bytes": base, "peak_bytes": status("VmHWM:"), "seconds": seconds}))
"""


def write_checkpoint(part: str, work: Path) -> Path:
    """A paper-size random-weight checkpoint of ``part`` (built once, reused)."""
    directory = work / part
    if (directory / "model.safetensors").is_file():
        return directory
    import torch

    module, name = PARTS[part]
    cls = getattr(__import__(module, fromlist=[name]), name)
    torch.manual_seed(0)
    cls.from_preset("paper").save_pretrained(directory)
    return directory


def measure(mode: str, part: str, directory: Path) -> dict:
    module, name = PARTS[part]
    out = subprocess.run([sys.executable, "-c", CHILD, mode, module, name, str(directory)], cwd=ROOT,
                         capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{part} {mode} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(args) -> dict:
    record = {"provenance": provenance(sys.argv[1:], "benchmarks/load_memory.py"), "targets": TARGETS, "parts": {}}
    for part in args.parts:
        directory = write_checkpoint(part, Path(args.work))
        file_bytes = (directory / "model.safetensors").stat().st_size
        measure("read", part, directory)  # into the page cache: every measured row reads from memory
        runs = {mode: [] for mode in MODES}
        for _ in range(args.repeats):  # interleaved: each repeat measures every mode once
            for mode in MODES:
                runs[mode].append(measure(mode, part, directory))
        rows = {}
        read_s = statistics.median(r["seconds"] for r in runs["read"])
        for mode, results in runs.items():
            above = [(r["peak_bytes"] - r["baseline_bytes"]) / file_bytes for r in results]
            seconds = [r["seconds"] for r in results]
            rows[mode] = {"peak_above_baseline_x_file": max(above), "peak_above_baseline_gib": max(
                r["peak_bytes"] - r["baseline_bytes"] for r in results) / 2**30, "seconds": seconds,
                "median_seconds": statistics.median(seconds),
                "time_x_read": statistics.median(seconds) / read_s, "target_x_file": TARGETS.get(mode)}
        record["parts"][part] = {"file_bytes": file_bytes, "file_gib": file_bytes / 2**30, "modes": rows}
    return record


def markdown(record: dict) -> str:
    lines = ["| part | file | load | peak above baseline (x file) | target | time (x file read) |",
             "|---|---|---|---|---|---|"]
    for part, info in record["parts"].items():
        for mode, row in info["modes"].items():
            target = f"<= {row['target_x_file']}x" if row["target_x_file"] else ""
            lines.append(f"| {part} | {info['file_gib']:.2f} GiB fp32 | {mode} | "
                         f"{row['peak_above_baseline_x_file']:.2f}x ({row['peak_above_baseline_gib']:.2f} GiB) | "
                         f"{target} | {row['median_seconds']:.1f} s ({row['time_x_read']:.2f}x) |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", nargs="+", choices=list(PARTS), default=list(PARTS))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--work", default="/tmp/divot_load_memory", help="where the checkpoints are kept")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "load_memory.json"))
    args = parser.parse_args(argv)
    record = run(args)
    Path(args.out).write_text(json.dumps(record, indent=2) + "\n")
    print(markdown(record))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
