"""Tokenizer throughput: clips/s, peak memory and GFLOP per clip, float32 vs bfloat16 autocast.

Each configuration runs in its own subprocess so peak memory (max RSS on CPU, max allocated on CUDA) is
its own. Prints a Markdown table; ``--json`` also writes the raw rows.

    python benchmarks/tokenizer_throughput.py --preset paper --batch 1 4 --precision fp32 bf16
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time


def measure(preset: str, batch: int, precision: str, device: str, repeats: int, cast_weights: bool) -> dict:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from divot.tokenizer import VideoTokenizer, tokenizer_preset

    torch.manual_seed(0)
    config = tokenizer_preset(preset)
    config.temporal.zero_init = False  # random weights everywhere, so outputs depend on the input
    model = VideoTokenizer(config).to(device).eval()
    cfg = model.config
    size = cfg.frame_size
    clips = torch.rand(batch, cfg.num_frames, 3, size, size, device=device) * 2 - 1
    reference = None
    if precision != "fp32":
        with torch.no_grad():
            reference = model(clips[:1]).float()
    if cast_weights:
        model.frame_encoder.to(torch.bfloat16)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base_alloc = torch.cuda.memory_allocated()

    def run():
        out = model.encode(clips, batch_size=batch, precision=precision)
        if device == "cuda":
            torch.cuda.synchronize()
        return out

    model.requires_grad_(False)  # inference: FlopCounterMode's module tracker trips over no_grad + parameters
    from divot.tokenizer.model import autocast_context

    with FlopCounterMode(display=False) as counter, autocast_context(torch.device(device), precision):
        model(clips[:1])
    gflop = counter.get_total_flops() / 1e9
    run()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = run()
        times.append(time.perf_counter() - t0)
    best = min(times)
    row = {
        "preset": preset, "device": device, "precision": precision + ("+bf16-weights" if cast_weights else ""),
        "batch": batch, "s_per_clip": best / batch, "clips_per_s": batch / best, "gflop_per_clip": gflop,
        "gflops_achieved": gflop * batch / best, "threads": torch.get_num_threads(),
    }
    if device == "cuda":
        row["peak_mem_mib"] = (torch.cuda.max_memory_allocated() - base_alloc) / 2**20
    else:
        row["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        row["rss_before_mib"] = rss_before
    if reference is not None:
        rel = ((out[:1] - reference.cpu()).norm() / reference.norm()).item()
        row["rel_err_vs_fp32"] = rel
    return row


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="paper")
    p.add_argument("--batch", type=int, nargs="+", default=[1, 4])
    p.add_argument("--precision", nargs="+", default=["fp32", "bf16"])
    p.add_argument("--cast-weights", action="store_true", help="also run bf16 with the ViT weights cast once")
    p.add_argument("--device", default="cuda" if _cuda() else "cpu")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--json", default=None, help="write rows to this JSON file")
    p.add_argument("--one", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.one:
        preset, batch, precision, cast = args.one.split(":")
        row = measure(preset, int(batch), precision, args.device, args.repeats, cast == "1")
        sys.stdout.write(json.dumps(row) + "\n")
        return 0
    combos = [(b, pr, False) for pr in args.precision for b in args.batch]
    if args.cast_weights:
        combos += [(b, "bf16", True) for b in args.batch]
    rows = []
    for batch, precision, cast in combos:
        cmd = [sys.executable, __file__, "--one", f"{args.preset}:{batch}:{precision}:{int(cast)}",
               "--device", args.device, "--repeats", str(args.repeats)]
        res = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy())
        if res.returncode != 0:
            sys.stderr.write(res.stderr)
            return res.returncode
        rows.append(json.loads(res.stdout.strip().splitlines()[-1]))
        r = rows[-1]
        sys.stderr.write(f"{r['precision']} batch {batch}: {r['s_per_clip']:.2f} s/clip\n")
    mem_key = "peak_mem_mib" if args.device == "cuda" else "peak_rss_mib"
    print("| preset | device | precision | batch | s/clip | clips/s | GFLOP/clip | GFLOP/s | peak mem (MiB) | rel. err vs fp32 |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        err = f"{r['rel_err_vs_fp32']:.2e}" if "rel_err_vs_fp32" in r else "-"
        print(f"| {r['preset']} | {r['device']} | {r['precision']} | {r['batch']} | {r['s_per_clip']:.2f} | "
              f"{r['clips_per_s']:.3f} | {r['gflop_per_clip']:.0f} | {r['gflops_achieved']:.0f} | "
              f"{r[mem_key]:.0f} | {err} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)
    return 0


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


if __name__ == "__main__":
    sys.exit(main())
