"""The module a tokenizer-training stage optimises: tokenizer (T1) + de-tokenizer under the denoising loss."""

from __future__ import annotations

import torch
from torch import nn

from divot.data.transforms import dense_frame_subset
from divot.diffusion.detokenizer import Detokenizer
from divot.diffusion.objective import DenoisingObjective, foreground_weights
from divot.tokenizer.model import VideoTokenizer, autocast_context
from divot.training.layout_targets import centred_masks, pooled_frames


class TokenizerDiffusionModel(nn.Module):
    """``forward(batch) -> {"loss"}`` for one stage.

    T1: tokens = tokenizer(sparse frames), gradients reach the tokenizer (its ViT as configured: frozen in
    the paper preset). T2: the tokenizer is frozen and in eval mode. T3: tokens come with the batch.
    With ``cond_dropout`` each clip's context is replaced by the unconditional one with that probability.
    With ``layout_weight`` > 0 (T1), a linear head from the clip's tokens to its sparse frames pooled to
    ``layout_size``^2 adds ``layout_weight`` x that reconstruction error; with ``grid_weight`` > 0 the U-Net's
    context grid is asked for the rendered frames at its grid size; with ``shape_weight`` > 0 a second linear
    head reads each sparse frame's centred silhouette at ``shape_size``^2 (``LayoutConfig``).
    """

    def __init__(self, stage: str, tokenizer: VideoTokenizer | None, detokenizer: Detokenizer,
                 objective: DenoisingObjective, cond_dropout: float = 0.0, precision: str = "fp32",
                 layout_weight: float = 0.0, layout_size: int = 8, grid_weight: float = 0.0,
                 shape_weight: float = 0.0, shape_size: int = 12):
        super().__init__()
        self.stage = stage
        self.tokenizer = tokenizer
        self.detokenizer = detokenizer
        self.objective = objective
        self.cond_dropout = cond_dropout
        self.precision = precision
        self.layout_weight, self.layout_size = layout_weight, layout_size
        self.shape_weight, self.shape_size = shape_weight, shape_size
        self.layout_head = self.shape_head = None
        if layout_weight > 0 or shape_weight > 0:
            if stage != "T1" or tokenizer is None:
                raise ValueError("the layout and shape terms train the tokenizer: stage T1 only")
            tc = tokenizer.config
            if layout_weight > 0:
                self.layout_head = nn.Linear(tc.num_tokens * tc.token_dim, tc.num_frames * 3 * layout_size**2)
            if shape_weight > 0:
                self.shape_head = nn.Linear(tc.num_tokens * tc.token_dim, tc.num_frames * shape_size**2)
        self.grid_weight = grid_weight
        if grid_weight > 0:
            grid = detokenizer.unet.context_grid
            if stage != "T1" or grid is None or grid.channels < 3:
                raise ValueError("the grid layout term needs stage T1 and a U-Net context grid of >= 3 channels")

    def train(self, mode: bool = True):
        super().train(mode)
        if self.stage != "T1" and self.tokenizer is not None:
            self.tokenizer.eval()  # frozen (batch-norm statistics included)
        return self

    def tokens(self, batch: dict) -> torch.Tensor:
        if self.stage == "T3":
            return batch["tokens"].float()
        if self.stage == "T1":
            return self.tokenizer(batch["sparse"])
        with torch.no_grad():
            return self.tokenizer(batch["sparse"]).detach()

    def _pooled_error(self, pred: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        """Foreground-weighted squared error of pred (b, t, 3, s, s) against frames (b, t, 3, H, W) pooled to s."""
        target = pooled_frames(frames, pred.shape[-1])
        cfg = self.objective.loss_cfg
        w = foreground_weights(target.transpose(1, 2), cfg.foreground_weight, cfg.foreground_threshold)
        w = w.transpose(1, 2)  # (b, t, 1, s, s)
        return ((pred.float() - target) ** 2 * w).sum() / (w.sum() * 3)

    def layout_loss(self, tokens: torch.Tensor, sparse: torch.Tensor) -> torch.Tensor:
        """The layout head's error against the sparse frames pooled to ``layout_size``."""
        b, t = sparse.shape[:2]
        s = self.layout_size
        return self._pooled_error(self.layout_head(tokens.float().flatten(1)).view(b, t, 3, s, s), sparse)

    def shape_loss(self, tokens: torch.Tensor, sparse: torch.Tensor) -> torch.Tensor:
        """The shape head's squared error against each sparse frame's centred silhouette (frames with none
        are left out)."""
        b, t = sparse.shape[:2]
        s = self.shape_size
        target, present = centred_masks(sparse, s, self.objective.loss_cfg.foreground_threshold)
        pred = self.shape_head(tokens.float().flatten(1)).view(b, t, s, s)
        w = present.float()[:, :, None, None]
        return ((pred - target) ** 2 * w).sum() / (w.sum() * s * s).clamp(min=1.0)

    def grid_loss(self, context: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        """The context grid's first three channels against the rendered frames pooled to the grid size."""
        grid = self.detokenizer.unet.context_grid.layout(context, frames.shape[1])  # (b, t, c, g, g)
        return self._pooled_error(grid[:, :, :3], frames)

    def forward(self, batch: dict) -> dict:
        device = next(self.detokenizer.parameters()).device
        batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
        with autocast_context(device, self.precision):
            tokens = self.tokens(batch).float()
            context = self.detokenizer.context(tokens)  # (b, q, context_dim)
            if self.cond_dropout > 0 and self.training:
                drop = torch.rand(context.shape[0], device=device) < self.cond_dropout  # (b,)
                uncond = self.detokenizer.unconditional_context().to(context.dtype)
                context = torch.where(drop[:, None, None], uncond.expand_as(context), context)
            with torch.no_grad():
                dense = batch["dense"]  # (b, 16, 3, S, S) -> the frames the de-tokenizer renders
                dense = dense[:, dense_frame_subset(self.detokenizer.config.num_frames, dense.shape[1])]
                x0 = self.detokenizer.frames_to_latents(dense)
            loss = self.objective(self.detokenizer.predict, x0, context)
            out = {"loss": loss}
            if self.layout_head is not None:
                layout = self.layout_loss(tokens, batch["sparse"])
                out["loss"] = out["loss"] + self.layout_weight * layout
                out["layout_loss"] = layout.detach()
            if self.shape_head is not None:
                shape = self.shape_loss(tokens, batch["sparse"])
                out["loss"] = out["loss"] + self.shape_weight * shape
                out["shape_loss"] = shape.detach()
            if self.grid_weight > 0:
                grid = self.grid_loss(context, dense)
                out["loss"] = out["loss"] + self.grid_weight * grid
                out["grid_loss"] = grid.detach()
            if len(out) > 1:
                out["denoise_loss"] = loss.detach()
        return out


def trainable_named_parameters(model: TokenizerDiffusionModel, train_condition: bool) -> list:
    """(name, parameter) pairs the stage optimises; everything else is frozen (requires_grad False)."""
    detok = model.detokenizer
    for p in model.parameters():
        p.requires_grad_(False)
    chosen: list = []
    if model.stage == "T1":
        tok = model.tokenizer
        fe_trainable = tok.config.frame_encoder.trainable
        chosen += [(f"tokenizer.{n}", p) for n, p in tok.named_parameters()
                   if fe_trainable or not n.startswith("frame_encoder.")]
    for name in ("layout_head", "shape_head"):
        if getattr(model, name) is not None:
            chosen += [(f"{name}.{n}", p) for n, p in getattr(model, name).named_parameters()]
    chosen += [(f"detokenizer.unet.{n}", p) for n, p in detok.unet.named_parameters()]
    if model.stage == "T1" or train_condition:
        chosen += [(f"detokenizer.condition.{n}", p) for n, p in detok.condition.named_parameters()]
    for _, p in chosen:
        p.requires_grad_(True)
    return chosen
