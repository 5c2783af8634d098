"""De-tokenizer samplers: seconds per clip, and how far each lands from the reference DDIM-50 output.

Times ``Detokenizer.decode`` (batch 1, classifier-free guidance 7.5, rescale 0.7) for the published sampler
(reference DDIM, 50 steps, eta 1.0) and the diffusers schedulers at fewer steps, all from the same initial
noise x_T and the same tokens. After a short warm-up (DDIM, 2 steps), ``--repeats`` rounds run every sampler once
each, in turn (so a slow spell of the machine hits them alike); seconds per clip are the median over the rounds,
and the JSON holds every round's time, min, max and spread, and each speed-up vs the published sampler as the
ratio of medians with its lowest and highest per-round value.

Quality is measured against reference DDIM-50 with eta 0 on the same noise and tokens. eta 0 because the
published eta 1.0 injects fresh noise at every step: its output depends on the noise stream, not only on
x_T, so no other sampler could be expected to land on it. The eta-1.0 row's distance to the eta-0 output
shows how much that per-step noise alone moves a sample. Reported: PSNR (dB, frames in [-1, 1]) and mean
absolute pixel error (in [-1, 1] units and in 0-255 levels).

Without ``--checkpoint`` the preset has random weights. A fresh U-Net's zero-initialised layers (output conv,
attention output projections, ...) would make it predict v = 0 everywhere, so every all-zero parameter is
re-drawn from N(0, 0.02) first; timings do not depend on the weights, but the quality columns then describe
how closely the solvers agree on an untrained vector field, not visual quality. Pass a trained
de-tokenizer (``--checkpoint DIR``, and ideally real ``--tokens``) for quality numbers that mean something.

    python benchmarks/sampler_speed.py --preset tiny --device cpu --threads 2 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from _timing import interleaved, load_avg, provenance, ratio, summarize

# (label, sampler, steps, eta); eta only reaches the DDIM samplers.
CONFIGS = [
    ("reference DDIM 50 (published, eta 1)", "reference", 50, 1.0),
    ("reference DDIM 50, eta 0 (quality reference)", "reference", 50, 0.0),
    ("ddim 50 (diffusers, eta 0)", "ddim", 50, 0.0),
    ("dpmsolver++ 20", "dpmsolver++", 20, 0.0),
    ("dpmsolver++ 10", "dpmsolver++", 10, 0.0),
    ("unipc 20", "unipc", 20, 0.0),
    ("euler 30", "euler", 30, 0.0),
]
QUALITY_REFERENCE = 1  # index in CONFIGS
GUIDANCE, RESCALE = 7.5, 0.7


def load_detokenizer(preset: str, checkpoint: str | None, device: str):
    from divot.diffusion import Detokenizer

    if checkpoint:
        return Detokenizer.from_pretrained(checkpoint, device=device).eval()
    torch.manual_seed(0)
    model = Detokenizer.from_preset(preset)
    with torch.no_grad():
        for p in model.parameters():
            if p.numel() and not p.any():  # zero-initialised: a fresh U-Net would predict v = 0
                p.normal_(0.0, 0.02)
    return model.to(device).eval()


def load_tokens(path: str | None, num_tokens: int, token_dim: int) -> torch.Tensor:
    """(1, q, d): the first clip of a ``divot tokenize`` file, or N(0, 1) tokens (the tiny tokenizer's scale)."""
    if path:
        from safetensors.torch import load_file

        return load_file(path)["tokens"][:1].float()
    return torch.randn(1, num_tokens, token_dim, generator=torch.Generator().manual_seed(1))


def psnr_mae(pred: torch.Tensor, ref: torch.Tensor) -> tuple[float, float]:
    from divot.eval.metrics import psnr

    return psnr(pred, ref).item(), (pred - ref).abs().mean().item()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="tiny", help="de-tokenizer preset (random weights) when no --checkpoint")
    p.add_argument("--checkpoint", default=None, help="a trained de-tokenizer directory")
    p.add_argument("--tokens", default=None, help="a tokens .safetensors from `divot tokenize` (first clip)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--repeats", type=int, default=3, help="timed rounds over all samplers (default 3)")
    p.add_argument("--out", default=None, help="JSON file (default benchmarks/results/sampler_<name>_<device>.json)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = args.device
    name = "checkpoint" if args.checkpoint else args.preset
    out = Path(args.out) if args.out else Path(__file__).parent / "results" / f"sampler_{name}_{device}.json"

    model = load_detokenizer(args.preset, args.checkpoint, device)
    cfg = model.config
    tokens = load_tokens(args.tokens, cfg.num_tokens, cfg.token_dim).to(device)
    shape = (1, cfg.latent_channels, cfg.num_frames, cfg.latent_size, cfg.latent_size)
    x_T = torch.randn(shape, generator=torch.Generator().manual_seed(0)).to(device)

    def decode(sampler: str, steps: int, eta: float) -> torch.Tensor:
        generator = torch.Generator(device=device).manual_seed(0)  # eta > 0: the same noise stream every run
        frames = model.decode(tokens, num_steps=steps, guidance_scale=GUIDANCE, guidance_rescale=RESCALE,
                              sampler=sampler, eta=eta, generator=generator, x_T=x_T, progress=False)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        return frames.float().cpu()

    record = provenance(argv, __file__, device)
    decode("ddim", 2, 0.0)  # warm-up
    calls = {label: (lambda a=(sampler, steps, eta): decode(*a)) for label, sampler, steps, eta in CONFIGS}
    runs, outputs = interleaved(calls, args.repeats, warmup=0)
    for label, _, _, _ in CONFIGS:
        t = summarize(runs[label])
        sys.stderr.write(f"{label}: {t['median']:.2f} s/clip ({', '.join(f'{x:.2f}' for x in t['runs'])})\n")

    reference = outputs[CONFIGS[QUALITY_REFERENCE][0]]
    published = runs[CONFIGS[0][0]]
    rows = []
    for label, sampler, steps, eta in CONFIGS:
        frames, timing = outputs[label], summarize(runs[label])
        speedup = ratio(published, runs[label])  # paired per round: > 1 is faster than the published sampler
        quality_psnr, mae = psnr_mae(frames, reference)
        rows.append({"label": label, "sampler": sampler, "steps": steps, "eta": eta, "s_per_clip": timing["median"],
                     "s_runs": timing["runs"], "s_min": timing["min"], "s_max": timing["max"],
                     "spread": timing["spread"], "speedup_vs_published": speedup["ratio_of_medians"],
                     "speedup_min": speedup["min"], "speedup_max": speedup["max"], "speedup": speedup,
                     "psnr_vs_ref_db": quality_psnr if quality_psnr != float("inf") else None,
                     "mae_vs_ref": mae, "mae_vs_ref_255": mae * 127.5, "output_std": frames.std().item()})
    result = {
        "preset": args.preset if not args.checkpoint else None, "checkpoint": args.checkpoint,
        "weights": "trained" if args.checkpoint else "random (all-zero parameters re-drawn from N(0, 0.02))",
        "tokens": args.tokens or "N(0, 1), seed 1", "device": device, "threads": torch.get_num_threads(),
        "batch": 1, "guidance": GUIDANCE, "rescale": RESCALE, "repeats": args.repeats, "torch": torch.__version__,
        "cpu": record["machine"]["cpu"], **record, "load_avg_after": load_avg(),
        "quality_reference": "reference DDIM 50 steps, eta 0 (deterministic), same x_T and tokens; the published "
                             "eta 1.0 adds fresh noise every step, so its output is not a fixed target",
        "rows": rows,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")

    print(f"| sampler | steps | s/clip ({device}, {torch.get_num_threads()} threads; min-max) | speed-up vs "
          "published (rounds) | PSNR vs DDIM-50 eta 0 (dB) | mean abs. error (0-255) |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        q = "(reference)" if r["psnr_vs_ref_db"] is None else f"{r['psnr_vs_ref_db']:.2f}"
        print(f"| {r['label']} | {r['steps']} | {r['s_per_clip']:.2f} ({r['s_min']:.2f}-{r['s_max']:.2f}) | "
              f"{r['speedup_vs_published']:.2f}x ({r['speedup_min']:.2f}-{r['speedup_max']:.2f}) | {q} | "
              f"{r['mae_vs_ref_255']:.2f} |")
    sys.stderr.write(f"wrote {out}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
