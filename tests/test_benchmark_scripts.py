"""The speed benchmarks still run against the library (a renamed method once broke one unnoticed): each runs
at its smallest size in a fresh process, and the agreement checks it records hold. (The numbers themselves are
measured with the commands in benchmarks/RESULTS.md.)"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_benchmark(script: str, *argv: str) -> None:
    proc = subprocess.run([sys.executable, f"benchmarks/{script}", *argv], cwd=ROOT, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, f"{script} failed:\n{proc.stderr[-3000:]}"


def test_eval_throughput_runs_every_setting(tmp_path):
    out = tmp_path / "eval_throughput.json"
    run_benchmark("eval_throughput.py", "--num", "3", "--repeats", "1", "--shapes", "short", "long",
                  "--clips", "2", "--queries", "8", "--num-workers", "0", "1", "--prefetch-video", "96x64x4",
                  "--prefetch-distinct", "2", "--accelerator-ms", "0", "5", "--out", str(out))
    record = json.loads(out.read_text())
    settings = {(row["shape"], row["scoring"], row["video_input"]) for row in record["rows"]}
    assert settings == {("short", s, v) for s in ("kv", "full") for v in ("cache", "decode")} | {
        ("long", "kv", "cache"), ("long", "full", "cache")}
    assert record["prefetch"]["predictions_agree"] is True and record["predictions_agree"] is True
    assert record["prefetch"]["videos"] == "96x64x4"
    assert {(row["num_workers"], row["accelerator_ms"]) for row in record["prefetch"]["rows"]} == {
        (0, 0), (1, 0), (0, 5), (1, 5)}


def test_batch_inference_batched_results_equal_unbatched(tmp_path):
    out = tmp_path / "batch_inference.json"
    run_benchmark("batch_inference.py", "--num", "3", "--batch-size", "2", "--clips", "2", "--queries", "8",
                  "--gen-clips", "1", "--max-new-tokens", "3", "--repeats", "1", "--out", str(out))
    checks = json.loads(out.read_text())["checks"]
    assert checks["gen_batched_equals_one_at_a_time"] is True
    assert checks["mc_options_batched_max_abs_diff"] < 1e-4 and checks["mc_questions_batched_max_abs_diff"] < 1e-4
