"""Tokenizer throughput: clips/s, peak memory and GFLOP per clip, float32 vs bfloat16 autocast.

Each configuration runs in its own subprocess so peak memory (max RSS on CPU, max allocated on CUDA) is
its own: after a FLOP count and a warm-up, ``--repeats`` timed calls; seconds per clip are their median. Prints a
Markdown table; ``--json`` also writes the rows (every repeat's seconds, median, min, max, spread), the speed
ratios between precisions at each batch (ratio of medians; the configurations run one after another, not
interleaved, so each ratio's min / max is the widest the repeats allow) and the machine, date and command.

    python benchmarks/tokenizer_throughput.py --preset paper --batch 1 --precision fp32 bf16 --cast-weights \
        --repeats 3 --threads 2 --json benchmarks/results/tokenizer_cpu_b1.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

from _timing import load_avg, provenance, ratio, summarize


def measure(preset: str, batch: int, precision: str, device: str, repeats: int, cast_weights: bool,
            threads: int | None = None) -> dict:
    import torch

    if threads:
        torch.set_num_threads(threads)
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
    timing = summarize(times)
    median = timing["median"]
    row = {
        "preset": preset, "device": device, "precision": precision + ("+bf16-weights" if cast_weights else ""),
        "batch": batch, "s_per_clip": median / batch, "s_per_clip_min": timing["min"] / batch,
        "s_per_clip_max": timing["max"] / batch, "clips_per_s": batch / median, "gflop_per_clip": gflop,
        "gflops_achieved": gflop * batch / median, "threads": torch.get_num_threads(), "timing": timing,
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
    p.add_argument("--repeats", type=int, default=3, help="timed calls per configuration (default 3)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--json", default=None, help="write rows to this JSON file")
    p.add_argument("--one", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.repeats < 1:
        p.error(f"--repeats must be >= 1, got {args.repeats}")
    if args.one:
        preset, batch, precision, cast = args.one.split(":")
        row = measure(preset, int(batch), precision, args.device, args.repeats, cast == "1", args.threads)
        sys.stdout.write(json.dumps(row) + "\n")
        return 0
    combos = [(b, pr, False) for pr in args.precision for b in args.batch]
    if args.cast_weights:
        combos += [(b, "bf16", True) for b in args.batch]
    record = provenance(argv, __file__, args.device)
    rows = []
    for batch, precision, cast in combos:
        cmd = [sys.executable, __file__, "--one", f"{args.preset}:{batch}:{precision}:{int(cast)}",
               "--device", args.device, "--repeats", str(args.repeats)]
        if args.threads:
            cmd += ["--threads", str(args.threads)]
        res = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy())
        if res.returncode != 0:
            sys.stderr.write(res.stderr)
            return res.returncode
        rows.append(json.loads(res.stdout.strip().splitlines()[-1]))
        r = rows[-1]
        sys.stderr.write(f"{r['precision']} batch {batch}: {r['s_per_clip']:.2f} s/clip "
                         f"({', '.join(f'{t / batch:.2f}' for t in r['timing']['runs'])})\n")
    record["machine"]["torch_threads"] = rows[0]["threads"] if rows else None  # the measuring processes'
    ratios = precision_ratios(rows)
    mem_key = "peak_mem_mib" if args.device == "cuda" else "peak_rss_mib"
    print("| preset | device | precision | batch | s/clip (min-max) | clips/s | GFLOP/clip | GFLOP/s | peak mem (MiB) "
          "| rel. err vs fp32 |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        err = f"{r['rel_err_vs_fp32']:.2e}" if "rel_err_vs_fp32" in r else "-"
        print(f"| {r['preset']} | {r['device']} | {r['precision']} | {r['batch']} | {r['s_per_clip']:.2f} "
              f"({r['s_per_clip_min']:.2f}-{r['s_per_clip_max']:.2f}) | "
              f"{r['clips_per_s']:.3f} | {r['gflop_per_clip']:.0f} | {r['gflops_achieved']:.0f} | "
              f"{r[mem_key]:.0f} | {err} |")
    for name, r in ratios.items():
        print(f"{name}: {r['ratio_of_medians']:.2f}x (widest {r['min']:.2f}-{r['max']:.2f})")
    if args.json:
        result = {"preset": args.preset, "device": args.device, "repeats": args.repeats, **record,
                  "load_avg_after": load_avg(), "rows": rows, "ratios": ratios}
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
            f.write("\n")
    return 0


def precision_ratios(rows: list[dict]) -> dict:
    """Time ratios of each configuration over every later one at the same batch, in the order they ran, e.g.
    ``fp32_over_bf16_b1`` (> 1: bf16 is faster) and ``bf16_over_bf16_bf16-weights_b1``."""
    out = {}
    for i, a in enumerate(rows):
        for b in rows[i + 1:]:
            if a["batch"] == b["batch"]:
                name = f"{a['precision']}_over_{b['precision']}_b{a['batch']}".replace("+", "_")
                out[name] = ratio(a["timing"]["runs"], b["timing"]["runs"], paired=False)
    return out


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


if __name__ == "__main__":
    sys.exit(main())
