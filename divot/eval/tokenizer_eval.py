"""Training-time evaluations of the tokenizer + de-tokenizer (DESIGN sections 5 and 9).

* ``conditioning_gap``: validation denoising loss with each clip's own tokens against the loss with the
  tokens of an empty (all-zero) clip, on the same noise and timesteps. Own < empty means the tokens carry
  content the denoiser uses: the single most useful training signal.
* ``reconstruction_scores``: shapes-world pixel measurements of reconstructions (colour, shape and motion
  match, object-mask IoU, PSNR beside the all-black baseline), for own tokens and for the empty context.
* ``probe_attributes``: linear probes (scikit-learn) of tokens against the clips' attribute labels.
"""

from __future__ import annotations

import numpy as np
import torch

from divot.data.shapes.measure import mask_iou, measure_clip, object_mask
from divot.data.transforms import dense_frame_subset
from divot.diffusion.objective import DenoisingObjective
from divot.eval.metrics import psnr
from divot.eval.probe import linear_probe


def empty_clip_tokens(tokenizer, batch: int) -> torch.Tensor:
    """Tokens of an all-zero (mid-grey) clip, (batch, q, d): what the unconditional context is made of."""
    cfg = tokenizer.config
    device = next(tokenizer.parameters()).device
    grey = torch.zeros(1, cfg.num_frames, 3, cfg.frame_size, cfg.frame_size, device=device)
    return tokenizer(grey).float().expand(batch, -1, -1)


@torch.no_grad()
def conditioning_gap(detokenizer, objective: DenoisingObjective, dense: torch.Tensor, tokens: torch.Tensor,
                     empty_tokens: torch.Tensor, seed: int = 0, repeats: int = 4) -> dict:
    """Mean validation loss with own tokens and with empty-clip tokens (same noise, same uniform timesteps).

    ``dense`` (b, 16, 3, S, S) frames, ``tokens`` / ``empty_tokens`` (b, q, d). ``repeats`` noise draws per
    clip reduce the variance. Returns ``{"loss_own", "loss_empty", "gap"}`` with gap = 1 - own / empty.
    """
    dense = dense[:, dense_frame_subset(detokenizer.config.num_frames, dense.shape[1])]
    x0 = detokenizer.frames_to_latents(dense)
    ctx_own, ctx_empty = detokenizer.context(tokens), detokenizer.context(empty_tokens)
    g = torch.Generator(device=x0.device).manual_seed(seed)
    own, empty = [], []
    for _ in range(repeats):
        noise = torch.randn(x0.shape, generator=g, device=x0.device)
        t = torch.randint(0, objective.schedule.num_train_timesteps, (x0.shape[0],), generator=g, device=x0.device)
        own.append(objective.per_sample_loss(detokenizer.predict, x0, ctx_own, noise, t))
        empty.append(objective.per_sample_loss(detokenizer.predict, x0, ctx_empty, noise, t))
    loss_own, loss_empty = torch.cat(own).mean().item(), torch.cat(empty).mean().item()
    return {"loss_own": loss_own, "loss_empty": loss_empty, "gap": 1.0 - loss_own / max(loss_empty, 1e-12)}


def clip_agreement(real, generated) -> dict:
    """Pixel-measurement agreement of one generated clip with the real one (frames (t, 3, H, W) in [-1, 1]
    or uint8 (t, H, W, 3); the generated clip may have fewer frames: the real one is subsampled to match)."""
    real, generated = torch.as_tensor(real), torch.as_tensor(generated)
    if real.shape[0] != generated.shape[0]:
        real = real[dense_frame_subset(generated.shape[0], real.shape[0])]
    m_real, m_gen = measure_clip(real), measure_clip(generated)
    real_f, gen_f = _as_float(real), _as_float(generated)  # (t, 3, H, W) in [-1, 1]
    return {
        "colour": float(m_gen.colour is not None and m_gen.colour == m_real.colour),
        "shape": float(m_gen.shape is not None and m_gen.shape == m_real.shape),
        "motion": float(m_gen.motion is not None and m_gen.motion == m_real.motion),
        "mask_iou": mask_iou(object_mask(real), object_mask(generated)),
        "psnr": float(psnr(gen_f[None], real_f[None])[0]),
        "psnr_black": float(psnr(torch.full_like(real_f, -1.0)[None], real_f[None])[0]),
    }


def _as_float(frames: torch.Tensor) -> torch.Tensor:
    if frames.dtype == torch.uint8:  # (t, H, W, 3) -> (t, 3, H, W) in [-1, 1]
        return frames.permute(0, 3, 1, 2).float() / 127.5 - 1.0
    return frames.float().clamp(-1, 1)


def reconstruction_scores(real: torch.Tensor, generated: torch.Tensor) -> dict:
    """Mean ``clip_agreement`` over a batch of clips (b, t, 3, H, W)."""
    rows = [clip_agreement(r, g) for r, g in zip(real.cpu(), generated.cpu(), strict=True)]
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}


def probe_attributes(train_tokens: torch.Tensor, train_labels: list[dict], test_tokens: torch.Tensor,
                     test_labels: list[dict], keys: tuple[str, ...] = ("colour", "shape", "motion")) -> dict:
    """Linear-probe accuracy (and chance) of each attribute in ``keys`` present in the labels."""
    out = {}
    for key in keys:
        tr = [i for i, lab in enumerate(train_labels) if key in lab]
        te = [i for i, lab in enumerate(test_labels) if key in lab]
        if not tr or not te or len({train_labels[i][key] for i in tr}) < 2:
            continue
        r = linear_probe(train_tokens[tr], [train_labels[i][key] for i in tr], test_tokens[te],
                         [test_labels[i][key] for i in te])
        out[key] = {"accuracy": r["accuracy"], "chance": r["chance"]}
    return out
