"""The module a tokenizer-training stage optimises: tokenizer (T1) + de-tokenizer under the denoising loss."""

from __future__ import annotations

import torch
from torch import nn

from divot.data.transforms import dense_frame_subset
from divot.diffusion.detokenizer import Detokenizer
from divot.diffusion.objective import DenoisingObjective
from divot.tokenizer.model import VideoTokenizer, autocast_context


class TokenizerDiffusionModel(nn.Module):
    """``forward(batch) -> {"loss"}`` for one stage.

    T1: tokens = tokenizer(sparse frames), gradients reach the tokenizer (its ViT as configured: frozen in
    the paper preset). T2: the tokenizer is frozen and in eval mode. T3: tokens come with the batch.
    With ``cond_dropout`` each clip's context is replaced by the unconditional one with that probability.
    """

    def __init__(self, stage: str, tokenizer: VideoTokenizer | None, detokenizer: Detokenizer,
                 objective: DenoisingObjective, cond_dropout: float = 0.0, precision: str = "fp32"):
        super().__init__()
        self.stage = stage
        self.tokenizer = tokenizer
        self.detokenizer = detokenizer
        self.objective = objective
        self.cond_dropout = cond_dropout
        self.precision = precision

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

    def forward(self, batch: dict) -> dict:
        device = next(self.detokenizer.parameters()).device
        batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
        with autocast_context(device, self.precision):
            context = self.detokenizer.context(self.tokens(batch).float())  # (b, q, context_dim)
            if self.cond_dropout > 0 and self.training:
                drop = torch.rand(context.shape[0], device=device) < self.cond_dropout  # (b,)
                uncond = self.detokenizer.unconditional_context().to(context.dtype)
                context = torch.where(drop[:, None, None], uncond.expand_as(context), context)
            with torch.no_grad():
                dense = batch["dense"]  # (b, 16, 3, S, S) -> the frames the de-tokenizer renders
                dense = dense[:, dense_frame_subset(self.detokenizer.config.num_frames, dense.shape[1])]
                x0 = self.detokenizer.frames_to_latents(dense)
            loss = self.objective(self.detokenizer.predict, x0, context)
        return {"loss": loss}


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
    chosen += [(f"detokenizer.unet.{n}", p) for n, p in detok.unet.named_parameters()]
    if model.stage == "T1" or train_condition:
        chosen += [(f"detokenizer.condition.{n}", p) for n, p in detok.condition.named_parameters()]
    for _, p in chosen:
        p.requires_grad_(True)
    return chosen
