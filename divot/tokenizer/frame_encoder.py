"""Frame encoder: a CLIP ViT built with timm, read at its last block (no final norm, no projection)."""

from __future__ import annotations

import logging
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
from timm.models.vision_transformer import VisionTransformer, _convert_openai_clip
from torch import nn

from divot.constants import CLIP_MEAN, CLIP_STD
from divot.hub import load_state_dict_strict
from divot.tokenizer.config import FrameEncoderConfig

logger = logging.getLogger(__name__)

# timm names of the OpenCLIP parts that Divot does not use (ln_post and the projection): dropped on load.
UNUSED_CLIP_KEYS = ("norm.weight", "norm.bias", "head.weight", "head.bias")


class FrameEncoder(nn.Module):
    """Frames (n, 3, H, W) in [-1, 1] -> patch tokens (n, grid*grid, width), class token dropped."""

    def __init__(self, config: FrameEncoderConfig):
        super().__init__()
        self.config = config
        self.vit = VisionTransformer(
            img_size=config.image_size, patch_size=config.patch_size, embed_dim=config.width,
            depth=config.depth, num_heads=config.num_heads, mlp_ratio=config.mlp_ratio,
            pre_norm=True, class_token=True, global_pool="token", num_classes=0, fc_norm=False,
            norm_layer=partial(nn.LayerNorm, eps=config.eps), act_layer=nn.GELU,
        )
        # Divot reads the last block's output: the final LayerNorm is not part of the model.
        self.vit.norm = nn.Identity()
        self.register_buffer("mean", torch.tensor(CLIP_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(CLIP_STD).view(1, 3, 1, 1), persistent=False)
        if not config.trainable:
            self.requires_grad_(False)

    def train(self, mode: bool = True):
        # A frozen encoder always stays in eval mode.
        return super().train(mode and self.config.trainable)

    def preprocess(self, frames: torch.Tensor) -> torch.Tensor:
        """[-1, 1] frames at any size -> CLIP-normalised frames at image_size."""
        size = self.config.image_size
        if frames.shape[-2:] != (size, size):
            frames = F.interpolate(frames, size=(size, size), mode="bicubic", antialias=True,
                                   align_corners=False)
        frames = (frames + 1.0) / 2.0
        return (frames - self.mean.to(frames.dtype)) / self.std.to(frames.dtype)

    def forward(self, frames: torch.Tensor, keep_class_token: bool = False) -> torch.Tensor:
        if frames.ndim != 4 or frames.shape[1] != 3:
            raise ValueError(f"FrameEncoder expects frames (n, 3, H, W), got {tuple(frames.shape)}")
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.config.trainable):
            tokens = self.vit.forward_features(self.preprocess(frames))  # (n, 1 + g*g, width)
        return tokens if keep_class_token else tokens[:, self.vit.num_prefix_tokens:]

    def load_open_clip(self, state_dict: dict[str, torch.Tensor], where: str = "OpenCLIP checkpoint") -> None:
        """Load OpenCLIP ``visual.*`` weights (timm's converter), strictly, ignoring ln_post and proj."""
        visual = {k: v for k, v in state_dict.items() if k.startswith("visual.")}
        if not visual:
            raise ValueError(f"{where}: no 'visual.*' keys found (is this an OpenCLIP checkpoint?)")
        converted = _convert_openai_clip(visual, self.vit, prefix="visual.")
        for key in UNUSED_CLIP_KEYS:
            converted.pop(key, None)
        load_state_dict_strict(self.vit, converted, where)


def read_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a ``.safetensors`` file or a ``.bin``/``.pt`` pickle (``weights_only=True``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a state dict, got {type(state).__name__}")
    return state
