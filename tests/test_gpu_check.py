"""benchmarks/gpu_check.py and gpu_check.sh: the whole check at tiny size on the CPU (every part measured, the
JSON and the Markdown row), a failing part and parts past their budget recorded while the others still run, and
the shell command (result copied to $OUT, the JSON's path printed)."""

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import gpu_check  # noqa: E402

PARTS = ("matmul_peak", "tokenizer", "egoschema", "detokenizer", "llm_train")


@pytest.fixture
def run(tmp_path, capsys):
    """``run(*args)`` -> (exit code, the JSON, the printed lines) of ``gpu_check.main`` at tiny size on the CPU."""
    threads = torch.get_num_threads()

    def go(*args):
        out = tmp_path / "gpu_check.json"
        code = gpu_check.main(["--size", "tiny", "--device", "cpu", "--threads", "1", "--json", str(out), *args])
        return code, json.loads(out.read_text()), capsys.readouterr().out.strip().splitlines()

    yield go
    torch.set_num_threads(threads)


def positive(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


def test_tiny_run_measures_every_part_and_prints_the_row(run):
    code, result, lines = run()
    parts = result["parts"]
    assert list(parts) == list(PARTS)
    assert result["imports"]["status"] == "ok"
    for name in ("matmul_peak", "tokenizer", "egoschema", "llm_train"):
        assert parts[name]["status"] == "ok", parts[name].get("traceback")
        assert positive(parts[name]["seconds"]) and parts[name]["peak_mem_gib"] is None  # CUDA only
    assert positive(parts["matmul_peak"]["tflops"])
    tokenizer = parts["tokenizer"]
    assert positive(tokenizer["clips_per_s"]) and positive(tokenizer["gflop_per_clip"])
    assert positive(tokenizer["fraction_of_peak"])
    ego = parts["egoschema"]
    assert ego["clips_per_question"] == 3 and ego["options"] == 5  # a 6 s video: three 2 s clips
    assert positive(ego["cached"]["questions_per_s"]) and positive(ego["from_video"]["questions_per_s"])
    llm = parts["llm_train"]
    assert llm["tokens_per_step"] == 2 * 128 and positive(llm["tokens_per_s"]) and positive(llm["mfu"])
    assert math.isfinite(llm["last_loss"]) and "gradient checkpointing" in llm["choice"]
    # The de-tokenizer: each sampler timed or its error recorded; the part fails only when both fail.
    detok = parts["detokenizer"]
    if detok["status"] == "ok":
        for sampler in ("reference", "fast"):
            assert positive(detok[sampler].get("s_per_clip")) or detok[sampler]["error"]
    else:
        assert detok["status"] == "error" and detok["error"]
    assert code == (0 if all(p["status"] == "ok" for p in parts.values()) else 1)
    # The table: header, separator, row; the row is also in the JSON.
    assert lines[-1] == result["markdown_row"] and lines[-3:-1] == result["markdown_header"].splitlines()
    cells = [c.strip() for c in result["markdown_row"].strip("|").split("|")]
    assert len(cells) == 10 and cells[2] == "tiny (cpu)" and cells[-1].endswith("gpu_check.json`")
    assert cells[4].startswith(f"{tokenizer['clips_per_s']:.3g} (")


def test_a_failing_part_is_recorded_and_the_next_one_runs(run, monkeypatch):
    def broken(ctx):
        raise ValueError("no such model")

    monkeypatch.setitem(gpu_check.PARTS, "tokenizer", broken)
    code, result, lines = run("--parts", "tokenizer", "matmul_peak")
    assert code == 1
    assert result["parts"]["tokenizer"]["status"] == "error"
    assert result["parts"]["tokenizer"]["error"] == "ValueError: no such model"
    assert result["parts"]["matmul_peak"]["status"] == "ok"
    assert "| error |" in lines[-1]


def test_parts_past_their_budget_time_out_and_the_run_goes_on(run, monkeypatch):
    def endless(ctx):
        while True:
            time.sleep(0.01)

    def wrapping(ctx):  # a library that turns every exception into its own
        try:
            endless(ctx)
        except BaseException as err:
            raise RuntimeError("wrapped") from err

    monkeypatch.setitem(gpu_check.PARTS, "tokenizer", endless)
    monkeypatch.setitem(gpu_check.PARTS, "egoschema", wrapping)
    monkeypatch.setitem(gpu_check.SIZES["tiny"].budgets, "tokenizer", 2.0)
    monkeypatch.setitem(gpu_check.SIZES["tiny"].budgets, "egoschema", 2.0)
    start = time.perf_counter()
    code, result, _ = run("--parts", "tokenizer", "egoschema", "matmul_peak")
    assert time.perf_counter() - start < 30
    parts = result["parts"]
    assert code == 1
    assert parts["tokenizer"]["status"] == parts["egoschema"]["status"] == "timeout"
    assert parts["tokenizer"]["error"] == "ran past its budget of 2 s"
    assert parts["matmul_peak"]["status"] == "ok"


def test_a_run_out_of_total_budget_skips_the_remaining_parts(run, monkeypatch):
    # the first part leaves under 2 s of a 6-s run; 4 s of slack before it keeps a loaded machine from skipping it
    monkeypatch.setitem(gpu_check.PARTS, "tokenizer", lambda ctx: time.sleep(4.5) or {})
    code, result, _ = run("--parts", "tokenizer", "matmul_peak", "--total-budget", "6")
    assert result["parts"]["tokenizer"]["status"] == "ok"
    assert result["parts"]["matmul_peak"]["status"] == "skipped" and code == 1


def test_gpu_check_sh_runs_the_check_and_copies_the_json_to_out(tmp_path):
    out, json_path = tmp_path / "out", tmp_path / "gpu_check.json"
    env = {**os.environ, "OUT": str(out), "GPU_CHECK_JSON": str(json_path)}
    res = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--size", "tiny", "--device", "cpu",
                          "--threads", "1", "--parts", "matmul_peak"], env=env, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    lines = res.stdout.strip().splitlines()
    assert lines[-1] == f"JSON: {json_path} (exit 0)"
    result = json.loads((out / "gpu_check.json").read_text())
    assert result["parts"]["matmul_peak"]["status"] == "ok"
    assert lines[-2] == result["markdown_row"]
    assert "matmul_peak: ok" in (out / "gpu_check.log").read_text()
