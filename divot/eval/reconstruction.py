"""Reconstruction quality: video -> tokens -> de-tokenizer -> frames, scored by PSNR and SSIM against the video.

``reconstruct_video`` does one video; ``evaluate_folder`` a folder of them, skipping (and counting) files that
cannot be decoded and appending one JSON line per finished video to a results file, so an interrupted run
resumes where it stopped.

PSNR flatters sparse scenes (a small object on a dark background): predicting an all-black frame already
scores well there. Every result therefore carries ``psnr_black``, the PSNR of an all-black prediction of the
same clips; a reconstruction is only informative where its PSNR is clearly above that baseline.
"""

from __future__ import annotations

import functools
import json
import logging
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from divot.constants import DENSE_FRAMES, MAX_CLIPS, NUM_SPARSE_FRAMES
from divot.data.loading import load_video_clips
from divot.data.prefetch import LoadFailed, prefetch
from divot.data.transforms import dense_frame_subset, to_sparse
from divot.data.video import VideoDecodeError, list_videos
from divot.eval.metrics import psnr, ssim
from divot.hub import atomic_write_text

logger = logging.getLogger(__name__)

# Called with (video path, original clips (n, T, 3, S, S), reconstructed clips (n, T, 3, S, S)).
VideoCallback = Callable[[Path, torch.Tensor, torch.Tensor], None]


def check_compatible(tokenizer, detokenizer) -> None:
    """Raise ValueError unless the de-tokenizer reads this tokenizer's tokens and renders its frame size."""
    tcfg, dcfg = tokenizer.config, detokenizer.config
    tok_shape, detok_shape = (tcfg.num_tokens, tcfg.token_dim), (dcfg.num_tokens, dcfg.token_dim)
    if tok_shape != detok_shape or tcfg.frame_size != dcfg.frame_size:
        raise ValueError(
            f"the de-tokenizer does not fit the tokenizer: tokenizer gives tokens {tok_shape} for "
            f"{tcfg.frame_size} px frames, de-tokenizer expects tokens {detok_shape} and renders "
            f"{dcfg.frame_size} px frames")
    if tcfg.num_frames != NUM_SPARSE_FRAMES:
        raise ValueError(f"the tokenizer must read {NUM_SPARSE_FRAMES} sparse frames per clip, its config says "
                         f"{tcfg.num_frames}")
    if not 1 <= dcfg.num_frames <= DENSE_FRAMES:
        raise ValueError(f"the de-tokenizer renders {dcfg.num_frames} frames per clip; reconstruction compares "
                         f"with the {DENSE_FRAMES} dense frames, so it needs 1 to {DENSE_FRAMES}")


def frame_subset(num_frames: int) -> list[int]:
    """Which of the 16 dense frames a de-tokenizer rendering ``num_frames`` frames is compared with."""
    return dense_frame_subset(num_frames)


@torch.no_grad()
def reconstruct_video(tokenizer, detokenizer, path: str | Path, num_steps: int = 50, sampler: str = "reference",
                      guidance_scale: float = 7.5, guidance_rescale: float = 0.7, eta: float = 1.0,
                      seed: int = 0, max_clips: int = MAX_CLIPS, batch_size: int = 4, precision: str = "auto",
                      progress: bool = False, clips: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Tokenize a video's clips and render them back (``clips``: the video's clips already decoded by
    ``load_video_clips``, (n, 16, 3, S, S), e.g. in a background process).

    The clips follow the one sampling policy (``load_video_clips``); the tokenizer sees their 5 sparse frames.
    ``eta`` is the DDIM noise level of the "reference" and "ddim" samplers (1.0, the published setting, adds
    fresh noise every step; 0 is deterministic given the initial noise). The initial noise of every clip is
    drawn on the CPU from ``seed`` up front, so it does not depend on ``batch_size`` or the device; the
    per-step noise of eta > 0 comes from one generator seeded with ``seed`` on the de-tokenizer's device, so
    with eta > 0 a clip's result also depends on how the clips are batched.

    Returns:
        original (n, T, 3, S, S) and reconstruction (n, T, 3, S, S), float32 on the CPU in [-1, 1], with
        T = ``detokenizer.config.num_frames`` (16, or that many of the dense frames spread evenly) and
        S the common frame size. Raises FileNotFoundError / VideoDecodeError for an unreadable file.
    """
    check_compatible(tokenizer, detokenizer)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    cfg = detokenizer.config
    dense = clips if clips is not None else load_video_clips(path, size=cfg.frame_size, max_clips=max_clips)
    # dense: (n, 16, 3, S, S)
    was_training = tokenizer.training
    tokenizer.eval()  # e.g. the tiny preset's batch-norm of the tokens uses its running statistics
    try:
        tokens = tokenizer.encode(to_sparse(dense), batch_size=batch_size, precision=precision)  # (n, q, d)
    finally:
        tokenizer.train(was_training)
    original = dense if cfg.num_frames == DENSE_FRAMES else dense[:, frame_subset(cfg.num_frames)]  # (n, T, ...)

    device = detokenizer.uncond_tokens.device
    n = tokens.shape[0]
    noise = torch.randn((n, cfg.latent_channels, cfg.num_frames, cfg.latent_size, cfg.latent_size),
                        generator=torch.Generator().manual_seed(seed))  # (n, c, T, h, w)
    generator = torch.Generator(device=device).manual_seed(seed)
    out = []
    for start in tqdm(range(0, n, batch_size), desc="decode", leave=False, disable=not progress):
        stop = start + batch_size
        frames = detokenizer.decode(tokens[start:stop].to(device), num_steps=num_steps,
                                    guidance_scale=guidance_scale, guidance_rescale=guidance_rescale,
                                    sampler=sampler, eta=eta, generator=generator, x_T=noise[start:stop].to(device),
                                    progress=False)
        out.append(frames.float().cpu())  # (b, T, 3, S, S)
    return original, torch.cat(out)


def clip_scores(original: torch.Tensor, reconstruction: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-clip PSNR, SSIM and all-black-prediction PSNR: each (n,) for clips (n, T, 3, S, S) in [-1, 1]."""
    black = torch.full_like(original, -1.0)
    return {"psnr": psnr(reconstruction, original), "ssim": ssim(reconstruction, original),
            "psnr_black": psnr(black, original)}


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def _read_results(path: Path, settings: dict) -> dict[str, dict]:
    """Finished videos of an earlier run: {video: record}.

    A torn last line (the run was killed mid-write) is dropped and the file rewritten without it, so the
    lines appended next start on a line of their own.
    """
    done: dict[str, dict] = {}
    if not path.is_file():
        return done
    text = path.read_text()
    lines = [line for line in text.splitlines() if line.strip()]
    for i, line in enumerate(lines):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if i == len(lines) - 1:
                logger.warning("%s: dropping an incomplete last line (interrupted run)", path)
                atomic_write_text(path, "".join(f"{kept}\n" for kept in lines[:-1]))
                break
            raise ValueError(f"{path}: line {i + 1} is not JSON; delete the file to start over") from None
        if not isinstance(record, dict) or "video" not in record:
            raise ValueError(f"{path}: line {i + 1} is not a result record; delete the file to start over")
        if record.get("settings") != settings:
            raise ValueError(f"{path} was written with other settings ({record.get('settings')}) than this run "
                             f"({settings}); use another output folder or delete it to start over")
        done[record["video"]] = record
    else:
        if text and not text.endswith("\n"):
            with path.open("a") as f:  # cut just before its newline: end the line before appending
                f.write("\n")
    return done


def evaluate_folder(tokenizer, detokenizer, folder: str | Path, num_steps: int = 50, sampler: str = "reference",
                    guidance_scale: float = 7.5, guidance_rescale: float = 0.7, eta: float = 1.0, seed: int = 0,
                    max_clips: int = MAX_CLIPS, batch_size: int = 4, precision: str = "auto",
                    results_path: str | Path | None = None, recursive: bool = False,
                    on_video: VideoCallback | None = None, progress: bool = True, num_workers: int = 0) -> dict:
    """Reconstruct every video of ``folder`` and score it.

    Videos that cannot be decoded are skipped with a warning naming each and counted (``num_skipped``). With
    ``results_path`` (JSONL), one line per finished video is appended and flushed; videos already there
    (same settings) are not recomputed. ``on_video(path, original, reconstruction)`` runs after each newly
    reconstructed video (e.g. to write a side-by-side GIF). Every video is reconstructed with the same ``seed``.
    ``num_workers`` processes decode the next videos while this one is reconstructed (``divot.data.prefetch``).

    Returns a JSON-ready dict: ``videos`` (one record per evaluated video: ``video`` (path relative to the
    folder), ``num_clips``, mean-over-clips ``psnr`` / ``ssim`` / ``psnr_black`` and per-clip lists),
    ``psnr`` / ``ssim`` / ``psnr_black`` (means over videos; None when none was evaluated), ``num_videos``,
    ``num_resumed``, ``num_skipped``, ``skipped`` ({video: reason}) and ``settings``. PSNR is in dB and
    ``inf`` for an exact match.
    """
    folder = Path(folder)
    check_compatible(tokenizer, detokenizer)
    videos = list_videos(folder, recursive=recursive)
    if not videos:
        raise ValueError(f"no video files in {folder}")
    settings = {"num_steps": num_steps, "sampler": sampler, "guidance_scale": guidance_scale,
                "guidance_rescale": guidance_rescale, "eta": eta, "seed": seed, "max_clips": max_clips,
                "batch_size": batch_size}
    results_path = Path(results_path) if results_path is not None else None
    done = _read_results(results_path, settings) if results_path is not None else {}
    records, skipped, num_resumed = [], {}, 0
    sink = None
    if results_path is not None:
        results_path.parent.mkdir(parents=True, exist_ok=True)
        sink = results_path.open("a")
    try:
        todo = [p for p in videos if p.relative_to(folder).as_posix() not in done]
        load = functools.partial(load_video_clips, size=detokenizer.config.frame_size, max_clips=max_clips)
        decoded = prefetch(todo, load, num_workers, errors=(VideoDecodeError, FileNotFoundError))
        bar = tqdm(videos, desc="reconstruct", unit="video", disable=not progress)
        for path in bar:
            name = path.relative_to(folder).as_posix()
            if name in done:
                records.append({k: v for k, v in done[name].items() if k != "settings"})
                num_resumed += 1
                continue
            bar.set_postfix_str(name)
            _, dense = next(decoded)  # (n, 16, 3, S, S); a failed one is read again here for its error
            try:
                original, recon = reconstruct_video(
                    tokenizer, detokenizer, path, num_steps=num_steps, sampler=sampler,
                    guidance_scale=guidance_scale, guidance_rescale=guidance_rescale, eta=eta, seed=seed,
                    max_clips=max_clips, batch_size=batch_size, precision=precision,
                    clips=None if isinstance(dense, LoadFailed) else dense)
            except (VideoDecodeError, FileNotFoundError) as err:
                logger.warning("skipping %s: %s", path, err)
                skipped[name] = str(err)
                continue
            scores = {k: v.tolist() for k, v in clip_scores(original, recon).items()}  # per clip
            record = {"video": name, "num_clips": int(original.shape[0]),
                      **{k: _mean(v) for k, v in scores.items()},
                      **{f"clip_{k}": v for k, v in scores.items()}}
            records.append(record)
            if on_video is not None:
                on_video(path, original, recon)
            if sink is not None:
                sink.write(json.dumps({**record, "settings": settings}) + "\n")
                sink.flush()
    finally:
        if sink is not None:
            sink.close()
    if skipped:
        logger.warning("skipped %d of %d videos that could not be decoded: %s", len(skipped), len(videos),
                       ", ".join(skipped))
    summary = {key: _mean([r[key] for r in records]) for key in ("psnr", "ssim", "psnr_black")}
    if not records:
        logger.warning("no video of %s could be evaluated", folder)
    elif not all(math.isfinite(v) for v in summary.values()):
        logger.warning("a mean is not finite (an exact reconstruction or an all-black video gives PSNR inf)")
    return {**summary, "num_videos": len(records), "num_resumed": num_resumed, "num_skipped": len(skipped),
            "skipped": skipped, "settings": settings, "videos": records}
