"""Periodic evaluation during tokenizer training (main process): loss gap, reconstructions, GIFs, probes."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from einops import rearrange

from divot.constants import DENSE_FPS
from divot.data.datasets import ClipDataset, read_annotations
from divot.data.token_files import TokenClipDataset, read_token_file
from divot.data.transforms import dense_frame_subset
from divot.data.writers import write_video
from divot.eval.tokenizer_eval import (
    conditioning_gap,
    empty_clip_tokens,
    probe_attributes,
    reconstruction_scores,
)

logger = logging.getLogger(__name__)


def _stack(dataset, limit: int) -> tuple[dict, list[int]]:
    """The first ``limit`` readable items of ``dataset`` stacked into tensors, and their indices."""
    rows, kept = [], []
    for i in range(len(dataset)):
        if len(rows) == limit:
            break
        item = dataset[i]
        if item is not None:
            rows.append(item)
            kept.append(i)
    if not rows:
        raise ValueError("no readable validation videos")
    return {k: torch.stack([r[k] for r in rows]) for k in rows[0] if isinstance(rows[0][k], torch.Tensor)}, kept


class Evaluator:
    """Holds fixed validation clips; ``run(step)`` evaluates the model as it is (call it under EMA weights)."""

    def __init__(self, cfg, model, device: torch.device, out: Path):
        self.cfg, self.model, self.device, self.out = cfg, model, device, out
        ec, dc = cfg.eval, cfg.data
        size = model.detokenizer.config.frame_size
        self.probe_items = None
        if cfg.stage == "T3":
            val = TokenClipDataset(read_token_file(dc.token_file), size)
            self.val, _ = _stack(val, ec.num_val)
            return
        source = dc.val or dc.train
        val_items = read_annotations(source, dc.video_root, dc.val_split)
        self.val, kept = _stack(ClipDataset(val_items, size, random_window=False), ec.num_val)
        self.val_labels = [val_items[i].labels for i in kept]
        if ec.probe and any(self.val_labels):
            # Fit on the first training clips; score on the validation clips (held-out combinations in the
            # shapes world) and on other training clips (in distribution).
            train_items = read_annotations(dc.train, dc.video_root, dc.train_split)
            n_fit = min(ec.num_probe_train, max(1, len(train_items) * 3 // 4))
            fit_items, test_items = train_items[:n_fit], train_items[n_fit : n_fit + ec.num_probe_train // 2]
            self.probe_train, kept = _stack(ClipDataset(fit_items, size, random_window=False), n_fit)
            self.probe_labels = [fit_items[i].labels for i in kept]
            self.probe_test, kept = ({}, []) if not test_items else _stack(
                ClipDataset(test_items, size, random_window=False), len(test_items))
            self.probe_test_labels = [test_items[i].labels for i in kept]
            self.probe_items = True

    def _tokens(self, sparse: torch.Tensor) -> torch.Tensor:
        tok = self.model.tokenizer
        out = [tok(sparse[i : i + 32].to(self.device)).float() for i in range(0, sparse.shape[0], 32)]
        return torch.cat(out)

    @torch.no_grad()
    def run(self, step: int) -> dict:
        model, ec = self.model, self.cfg.eval
        was_training = model.training
        model.eval()
        try:
            detok = model.detokenizer
            dense = self.val["dense"].to(self.device)
            if self.cfg.stage == "T3":
                tokens = self.val["tokens"].to(self.device)
                empty = detok.uncond_tokens.expand(tokens.shape[0], -1, -1)
            else:
                tokens = self._tokens(self.val["sparse"])
                empty = empty_clip_tokens(model.tokenizer, tokens.shape[0])
            result = {"step": step, **conditioning_gap(detok, model.objective, dense, tokens, empty,
                                                       seed=self.cfg.seed)}
            n = min(ec.num_samples, dense.shape[0])
            if n:
                result.update(self._samples(step, dense[:n], tokens[:n], empty[:n]))
            if self.probe_items:
                train_tokens = self._tokens(self.probe_train["sparse"]).cpu()
                result["probe"] = probe_attributes(train_tokens, self.probe_labels, tokens.cpu(), self.val_labels)
                if self.probe_test:
                    result["probe_in_dist"] = probe_attributes(train_tokens, self.probe_labels,
                                                               self._tokens(self.probe_test["sparse"]).cpu(),
                                                               self.probe_test_labels)
        finally:
            model.train(was_training)
        with (self.out / "eval.jsonl").open("a") as f:
            f.write(json.dumps(result) + "\n")
        logger.info("eval step %d: loss own %.4f / empty %.4f (gap %.1f%%)%s", step, result["loss_own"],
                    result["loss_empty"], 100 * result["gap"],
                    "".join(f", probe {k} {v['accuracy']:.2f}" for k, v in result.get("probe", {}).items()))
        return result

    def _samples(self, step: int, dense, tokens, empty) -> dict:
        ec, detok = self.cfg.eval, self.model.detokenizer
        cfg = detok.config
        g = torch.Generator(device=self.device).manual_seed(self.cfg.seed)
        shape = (dense.shape[0], cfg.latent_channels, cfg.num_frames, cfg.latent_size, cfg.latent_size)
        x_T = torch.randn(shape, generator=g, device=self.device)
        kw = dict(num_steps=ec.sample_steps, sampler=ec.sampler, guidance_scale=ec.guidance_scale, x_T=x_T,
                  progress=False)
        own = detok.decode(tokens, **kw)  # (n, t, 3, S, S)
        uncond = detok.decode(empty, **kw)
        real = dense[:, dense_frame_subset(own.shape[1], dense.shape[1])]
        grid = torch.cat([real, own, uncond], dim=-1)  # real | own | empty, side by side
        path = self.out / "samples" / f"step-{step:08d}.gif"
        fps = DENSE_FPS * own.shape[1] / dense.shape[1]  # real time whatever frame count the model renders
        write_video(rearrange(grid, "n t c h w -> t c (n h) w"), path, fps=fps)
        scores_own = reconstruction_scores(real.cpu(), own.cpu())
        scores_empty = reconstruction_scores(real.cpu(), uncond.cpu())
        return {"recon_own": scores_own, "recon_empty": scores_empty, "samples": str(path)}
