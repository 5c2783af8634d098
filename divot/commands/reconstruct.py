"""``divot reconstruct VIDEO_OR_FOLDER --tokenizer DIR --detokenizer DIR --out PATH``: tokens back to video.

One video: writes the reconstruction (its clips one after another; ``--side-by-side``: original | reconstruction)
to ``--out`` (.mp4 or .gif) and logs PSNR / SSIM. A folder: ``--out`` is a directory that receives
``metrics.json`` (means and per video), ``report.md`` (a Markdown table), ``side_by_side/<video>.gif`` (first
clip of each video) and ``results.jsonl`` (one line per finished video; a rerun resumes from it).
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

logger = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".gif")
RESULTS_NAME = "results.jsonl"
GIF_DIR = "side_by_side"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", type=Path, help="a video file, or a folder of videos")
    parser.add_argument("--tokenizer", required=True,
                        help="tokenizer directory, or a preset name ('tiny', 'paper') for random weights")
    parser.add_argument("--detokenizer", required=True,
                        help="de-tokenizer directory, or a preset name ('tiny', 'paper') for random weights")
    parser.add_argument("--out", required=True, type=Path,
                        help="output video (.mp4 / .gif) for one video; output folder for a folder")
    parser.add_argument("--steps", type=int, default=50, help="sampling steps (default 50)")
    parser.add_argument("--sampler", default="reference",
                        help="reference (the published DDIM, eta 1), ddim, dpmsolver++, euler, unipc or ddpm")
    parser.add_argument("--guidance", type=float, default=7.5, help="classifier-free guidance scale (1: off)")
    parser.add_argument("--rescale", type=float, default=0.7, help="guidance rescale (0: off)")
    parser.add_argument("--eta", type=float, default=1.0,
                        help="DDIM noise of the reference / ddim samplers (1: the published setting, 0: deterministic)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the initial noise (same for every video)")
    parser.add_argument("--max-clips", type=int, default=None, help="at most this many 2-second clips (20)")
    parser.add_argument("--batch-size", type=int, default=4, help="clips decoded together")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    parser.add_argument("--num-workers", type=int, default=None,
                        help="a folder: processes decoding the next videos while one is reconstructed (default: up "
                             "to 4, one core left; 0: decode in the main process)")
    parser.add_argument("--side-by-side", action="store_true",
                        help="one video: write original | reconstruction next to each other")


def load_detokenizer(spec: str, device=None):
    """A de-tokenizer from a directory, or a randomly initialised preset by name."""
    from divot.diffusion import Detokenizer

    return Detokenizer.from_pretrained_or_preset(spec, device)


def run(args) -> int:
    import torch

    from divot.commands.tokenize import load_tokenizer
    from divot.constants import MAX_CLIPS
    from divot.diffusion.detokenizer import SAMPLERS
    from divot.eval.reconstruction import check_compatible

    if args.sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {args.sampler!r}; choose from {list(SAMPLERS)}")
    if args.steps < 1 or args.batch_size < 1:
        raise ValueError(f"--steps and --batch-size must be >= 1, got {args.steps} and {args.batch_size}")
    if not args.input.exists():
        raise FileNotFoundError(f"{args.input} does not exist")
    folder_mode = args.input.is_dir()
    if not folder_mode and args.out.suffix.lower() not in VIDEO_SUFFIXES:
        raise ValueError(f"--out {args.out} must end in {' or '.join(VIDEO_SUFFIXES)} for a single video")
    if folder_mode and args.out.is_file():
        raise ValueError(f"--out {args.out} is a file; a folder input needs an output folder")

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    tokenizer = load_tokenizer(args.tokenizer, device, getattr(args, "precision", "auto")).eval()
    detokenizer = load_detokenizer(args.detokenizer, device).eval()
    check_compatible(tokenizer, detokenizer)
    if not Path(args.detokenizer).is_dir():
        detokenizer.set_unconditional_tokens(tokenizer)  # random preset: take the grey clip's tokens
    options = dict(num_steps=args.steps, sampler=args.sampler, guidance_scale=args.guidance,
                   guidance_rescale=args.rescale, eta=args.eta, seed=args.seed,
                   max_clips=MAX_CLIPS if args.max_clips is None else args.max_clips, batch_size=args.batch_size)
    if folder_mode:
        return _run_folder(args, tokenizer, detokenizer, options)
    return _run_video(args, tokenizer, detokenizer, options)


def _fps(num_frames: int) -> float:
    from divot.constants import CLIP_SECONDS

    return num_frames / CLIP_SECONDS  # a clip always spans 2 seconds


def _run_video(args, tokenizer, detokenizer, options: dict) -> int:
    import torch
    from einops import rearrange

    from divot.data.writers import write_video
    from divot.eval.reconstruction import clip_scores, reconstruct_video

    original, recon = reconstruct_video(tokenizer, detokenizer, args.input, progress=True, **options)
    frames = torch.cat([original, recon], dim=-1) if args.side_by_side else recon  # (n, T, 3, S, S or 2S)
    write_video(rearrange(frames, "n t c h w -> (n t) c h w"), args.out, fps=_fps(recon.shape[1]))
    scores = clip_scores(original, recon)
    logger.info("%s -> %s: %d clips, PSNR %.2f dB (all-black prediction %.2f dB), SSIM %.4f", args.input,
                args.out, recon.shape[0], scores["psnr"].mean().item(), scores["psnr_black"].mean().item(),
                scores["ssim"].mean().item())
    return 0


def _run_folder(args, tokenizer, detokenizer, options: dict) -> int:
    import torch

    from divot.data.writers import write_video
    from divot.eval.reconstruction import evaluate_folder

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)

    def write_gif(path: Path, original: torch.Tensor, recon: torch.Tensor) -> None:
        first = torch.cat([original[0], recon[0]], dim=-1)  # (T, 3, S, 2S): original | reconstruction
        write_video(first, out / GIF_DIR / _gif_name(path.relative_to(args.input).as_posix()),
                    fps=_fps(recon.shape[1]))

    from divot.data.prefetch import default_num_workers

    num_workers = getattr(args, "num_workers", None)
    num_workers = default_num_workers(detokenizer.uncond_tokens.device) if num_workers is None else num_workers
    if num_workers < 0:
        raise ValueError(f"--num-workers must be >= 0, got {num_workers}")
    results = evaluate_folder(tokenizer, detokenizer, args.input, results_path=out / RESULTS_NAME,
                              on_video=write_gif, num_workers=num_workers, **options)
    results = {"input": str(args.input), "tokenizer": str(args.tokenizer), "detokenizer": str(args.detokenizer),
               **results}
    (out / "metrics.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "report.md").write_text(markdown_report(results))
    if results["num_videos"]:
        logger.info("%d videos (%d skipped): PSNR %.2f dB (all-black prediction %.2f dB), SSIM %.4f -> %s",
                    results["num_videos"], results["num_skipped"], results["psnr"], results["psnr_black"],
                    results["ssim"], out)
    return 0


def _gif_name(video: str) -> str:
    """side_by_side file for a video path relative to the input folder: 'a/b.mp4' -> 'a__b.mp4.gif'."""
    return video.replace("/", "__") + ".gif"


def _fmt(value, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def markdown_report(results: dict) -> str:
    """A Markdown page: settings, the means, one table row per video (with its side-by-side GIF), skips."""
    s = results["settings"]
    lines = [
        "# Reconstruction report", "",
        f"Input `{results['input']}`; tokenizer `{results['tokenizer']}`, de-tokenizer `{results['detokenizer']}`.",
        f"Sampler {s['sampler']}, {s['num_steps']} steps, guidance {s['guidance_scale']} "
        f"(rescale {s['guidance_rescale']}), eta {s['eta']}, seed {s['seed']}, at most {s['max_clips']} clips "
        "per video.", "",
        f"Videos evaluated: {results['num_videos']}; skipped (could not be decoded): {results['num_skipped']}.", "",
        "PSNR is misleading on sparse scenes (small objects on a dark background): the all-black column is the "
        "PSNR of predicting black frames; a reconstruction should beat it clearly.", "",
        "| video | clips | PSNR (dB) | all-black PSNR (dB) | SSIM | original \\| reconstruction (clip 1) |",
        "|---|---|---|---|---|---|",
    ]
    for r in results["videos"]:
        gif = f"{GIF_DIR}/{_gif_name(r['video'])}"
        lines.append(f"| {r['video']} | {r['num_clips']} | {_fmt(r['psnr'], 2)} | {_fmt(r['psnr_black'], 2)} | "
                     f"{_fmt(r['ssim'], 4)} | ![{r['video']}]({gif}) |")
    lines.append(f"| **mean** | | **{_fmt(results['psnr'], 2)}** | **{_fmt(results['psnr_black'], 2)}** | "
                 f"**{_fmt(results['ssim'], 4)}** | |")
    if results["skipped"]:
        lines += ["", "Skipped:", ""] + [f"- `{name}`: {' '.join(why.split())}" for name, why in results["skipped"].items()]
    return "\n".join(lines) + "\n"
