"""Peak memory of ``divot convert llm``: the streaming conversion against the in-memory one it replaced.

A synthetic released Divot-LLM is written first: a Mistral-layout LLM in float32 (``--layers`` decoder layers of
width ``--hidden``, random weights) saved by transformers in shards of at most ``--shard-mb``, the agent
projections (``input_resampler.*``, ``output_resampler.*``) and the shapes-world tokenizer with the Divot tokens.
Each conversion then runs in a child process (this script with ``--child NAME``), which imports everything,
records its resident memory, resets the peak (``/proc/self/clear_refs``), converts, and reports:

- ``peak_rss_above_baseline_mib``: VmHWM after the conversion minus VmRSS before it: every resident page,
  file-mapped ones included (safetensors maps the shard being read; those pages are page cache the kernel can
  drop, but they count here);
- ``peak_anon_above_baseline_mib``: the highest RssAnon sampled every 5 ms, minus the baseline: the memory that
  cannot be dropped (a sample may miss a peak shorter than 5 ms).

The conversions: ``streaming_bf16`` and ``streaming_fp32`` (``divot convert llm``, the default and ``--dtype
float32``) and ``in_memory_bf16`` (``convert_llm(...).save_pretrained(...)``, what the command did before).
Both are compared with the largest source shard and the whole LLM (bytes on disk).

    python benchmarks/convert_llm_memory.py                        # ~1.1 GB LLM in 5 shards, about a minute
    python benchmarks/convert_llm_memory.py --layers 2 --out /tmp/convert_llm_memory.json
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from _timing import ROOT, load_avg, provenance

logger = logging.getLogger("convert_llm_memory")

RESULT = ROOT / "benchmarks" / "results" / "convert_llm_memory.json"
RUNS = ("streaming_bf16", "streaming_fp32", "in_memory_bf16")
MIB = 2**20


def status_kib(*fields: str) -> dict[str, int]:
    """Fields of /proc/self/status in KiB (VmRSS, VmHWM, RssAnon, RssFile)."""
    text = Path("/proc/self/status").read_text()
    return {f: int(re.search(rf"^{f}:\s+(\d+) kB", text, re.M).group(1)) for f in fields}


def write_released(root: Path, args) -> dict:
    """The synthetic released folders under ``root``; returns their sizes."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from divot.llm import build_shapes_tokenizer
    from divot.llm.tokens import add_special_tokens

    tokenizer = build_shapes_tokenizer()
    add_special_tokens(tokenizer)
    tokenizer.save_pretrained(str(root / "tokenizer"))
    config = AutoConfig.for_model("mistral", vocab_size=len(tokenizer), hidden_size=args.hidden,
                                  intermediate_size=args.intermediate, num_hidden_layers=args.layers,
                                  num_attention_heads=args.hidden // 128, num_key_value_heads=args.hidden // 512,
                                  max_position_embeddings=4096, tie_word_embeddings=False, bos_token_id=1,
                                  eos_token_id=2)
    torch.manual_seed(0)
    llm = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    llm.save_pretrained(str(root / "llm"), max_shard_size=f"{args.shard_mb}MB")
    largest_tensor = max(p.nbytes for p in llm.parameters())
    del llm
    h, d, k = args.hidden, 32, 4
    out = 2 * k * d + k
    agent = {}
    for prefix, (i, o) in (("input_resampler.proj.", (d, h)), ("output_resampler.proj.", (h, out))):
        agent.update({prefix + "0.weight": torch.randn(o, i) * 0.02, prefix + "0.bias": torch.zeros(o),
                      prefix + "2.weight": torch.randn(o, o) * 0.02, prefix + "2.bias": torch.zeros(o)})
    (root / "agent").mkdir()
    torch.save(agent, root / "agent" / "pytorch_model.bin")
    shards = sorted((root / "llm").glob("*.safetensors"))
    sizes = [p.stat().st_size for p in shards]
    return {"layers": args.layers, "hidden": args.hidden, "intermediate": args.intermediate,
            "vocab": len(tokenizer), "num_shards": len(shards), "shard_mib": [round(s / MIB, 1) for s in sizes],
            "largest_shard_mib": round(max(sizes) / MIB, 1), "total_mib": round(sum(sizes) / MIB, 1),
            "largest_tensor_mib": round(largest_tensor / MIB, 1)}


def child(name: str, root: Path, out: Path) -> None:
    """One conversion, measured from inside; prints one JSON line."""
    import gc

    import torch
    import transformers  # noqa: F401  (everything both paths import is imported before the baseline)
    from transformers import AutoConfig, AutoTokenizer, GenerationConfig, MistralForCausalLM  # noqa: F401

    import divot.commands.convert  # noqa: F401
    import divot.convert.llm_stream  # noqa: F401
    from divot.cli import main
    from divot.convert.llm import convert_llm

    gc.collect()
    base = status_kib("VmRSS", "RssAnon", "RssFile")
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
    peak_anon, done = [base["RssAnon"]], threading.Event()

    def sample():
        while not done.wait(0.005):
            peak_anon[0] = max(peak_anon[0], status_kib("RssAnon")["RssAnon"])

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t0 = time.perf_counter()
    src = ["--llm-dir", str(root / "llm"), "--agent-ckpt", str(root / "agent" / "pytorch_model.bin"),
           "--tokenizer-dir", str(root / "tokenizer"), "--num-queries", "16", "--out", str(out)]
    if name == "in_memory_bf16":
        convert_llm(root / "llm", root / "agent" / "pytorch_model.bin", root / "tokenizer", 16,
                    torch.bfloat16).save_pretrained(out)
        command = "convert_llm(...).save_pretrained(out)"
    else:
        argv = ["convert", "llm", *src] + (["--dtype", "float32"] if name == "streaming_fp32" else [])
        if main(argv) != 0:
            raise SystemExit(f"divot {' '.join(argv)} failed")
        command = "divot " + " ".join(argv)
    wall = time.perf_counter() - t0
    done.set()
    sampler.join()
    end = status_kib("VmHWM", "RssAnon")
    peak_anon[0] = max(peak_anon[0], end["RssAnon"])
    written = sum(p.stat().st_size for p in out.rglob("*.safetensors"))
    print(json.dumps({"name": name, "command": command.replace(str(root) + "/", ""), "wall_s": round(wall, 2),
                      "baseline_rss_mib": round(base["VmRSS"] / 1024, 1),
                      "peak_rss_above_baseline_mib": round((end["VmHWM"] - base["VmRSS"]) / 1024, 1),
                      "peak_anon_above_baseline_mib": round((peak_anon[0] - base["RssAnon"]) / 1024, 1),
                      "written_mib": round(written / MIB, 1)}))


def run_child(name: str, root: Path) -> dict:
    out = root / f"out_{name}"
    proc = subprocess.Popen([sys.executable, __file__, "--child", name, "--work", str(root), "--child-out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ})
    stdout, stderr = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"{name} failed ({proc.returncode}):\n{stderr[-3000:]}")
    record = json.loads(stdout.strip().splitlines()[-1])
    shutil.rmtree(out, ignore_errors=True)
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--hidden", type=int, default=2048)
    parser.add_argument("--intermediate", type=int, default=5632)
    parser.add_argument("--shard-mb", type=int, default=250, help="largest source shard (transformers' MB)")
    parser.add_argument("--runs", default=",".join(RUNS), help=f"comma-separated subset of {RUNS}")
    parser.add_argument("--out", type=Path, default=RESULT)
    parser.add_argument("--work", type=Path, default=None, help="folder for the synthetic files (default: a temp)")
    parser.add_argument("--child", choices=RUNS, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--child-out", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child, args.work, args.child_out)
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    record = provenance(argv, __file__)
    work = Path(tempfile.mkdtemp(prefix="convert_llm_memory.", dir=args.work))
    try:
        record["synthetic_llm"] = spec = write_released(work, args)
        logger.info("wrote the synthetic LLM: %s", spec)
        record["runs"] = {}
        for name in args.runs.split(","):
            result = run_child(name, work)
            for key in ("peak_rss_above_baseline_mib", "peak_anon_above_baseline_mib"):
                result[key.replace("_mib", "_per_largest_shard")] = round(result[key] / spec["largest_shard_mib"], 2)
                result[key.replace("_mib", "_per_total")] = round(result[key] / spec["total_mib"], 2)
            record["runs"][name] = result
            logger.info("%s: %s", name, result)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    record["load_avg_after"] = load_avg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    logger.info("wrote %s", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
