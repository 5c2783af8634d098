"""Convert the released ``Divot_tokenizer.bin`` + an OpenCLIP checkpoint into a ``VideoTokenizer``.

Reference key layout (DESIGN section 7): ``temporal_encoder.*``, ``norm.*`` and ``image_proj_model.*``
(spatial-temporal blocks + ``down_sampler`` resampler); the frame encoder comes from OpenCLIP ``visual.*``, or
from the ViT the tokenizer file itself may carry under ``vit_model.*`` (see ``VIT_PREFIXES``).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from divot.convert.keys import CLIP_BLOCK_RULES, RESAMPLER_RULES, take_prefix
from divot.hub import check_keys, load_state_dict_strict
from divot.tokenizer.config import (
    FrameEncoderConfig,
    ResamplerConfig,
    SpatialTemporalConfig,
    TemporalEncoderConfig,
    TokenizerConfig,
    tokenizer_preset,
)
from divot.tokenizer.frame_encoder import read_checkpoint
from divot.tokenizer.model import VideoTokenizer

logger = logging.getLogger(__name__)

# Heads are not arguments of the reference constructor: they are fixed in its code.
REFERENCE_TEMPORAL_HEADS = 12
REFERENCE_ST_HEADS = 8
REFERENCE_RESAMPLER_HEADS, REFERENCE_RESAMPLER_HEAD_DIM = 16, 64

# Where a tokenizer file may nest the OpenCLIP visual tower (its ``visual.*`` layout follows the prefix),
# longest first: the reference wraps the whole OpenCLIP model as ``vit_model.model``; a bare CLIP model
# gives ``vit_model.visual.``; the visual tower alone gives ``vit_model.``.
VIT_PREFIXES = ("vit_model.model.visual.", "vit_model.visual.", "vit_model.")
# Top-level names of an OpenCLIP model's text tower, which may sit beside ``visual`` under the same root.
CLIP_TEXT_TOWER_NAMES = ("transformer.", "token_embedding.", "positional_embedding", "ln_final.",
                         "text_projection", "logit_scale", "attn_mask")


def config_from_reference(tokenizer_args: dict, vision_cfg: dict | None = None) -> TokenizerConfig:
    """A ``TokenizerConfig`` from the reference constructor arguments (and an OpenCLIP vision config)."""
    a = dict(tokenizer_args)
    expected = {"num_frames", "input_dim", "hidden_size", "width", "temporal_depth", "pool_size", "use_norm",
                "transformer_depth", "resampler_depth", "st_num_tokens", "down_num_tokens", "resampler_dim"}
    unknown = set(a) - expected
    if unknown:
        raise ValueError(f"unknown reference tokenizer argument(s): {sorted(unknown)}")
    if not a.get("use_norm", True):
        raise ValueError("use_norm=False is not supported: the released tokenizer uses the pooling LayerNorm")
    num_frames, pool = a["num_frames"], a["pool_size"]
    if a.get("st_num_tokens", num_frames * pool * pool) != num_frames * pool * pool:
        raise ValueError(f"st_num_tokens {a['st_num_tokens']} != num_frames x pool_size^2 = {num_frames * pool**2}")
    if vision_cfg is None:
        fe = tokenizer_preset("paper").frame_encoder
    else:
        width = vision_cfg["width"]
        fe = FrameEncoderConfig(image_size=vision_cfg["image_size"], patch_size=vision_cfg["patch_size"],
                                width=width, depth=vision_cfg["layers"],
                                num_heads=width // vision_cfg.get("head_width", 64),
                                mlp_ratio=vision_cfg.get("mlp_ratio", 4.0))
    if fe.width != a["input_dim"]:
        raise ValueError(f"vision width {fe.width} != tokenizer input_dim {a['input_dim']}")
    return TokenizerConfig(
        num_frames=num_frames,
        frame_encoder=fe,
        temporal=TemporalEncoderConfig(width=a["width"], depth=a["temporal_depth"],
                                       num_heads=REFERENCE_TEMPORAL_HEADS),
        spatial_temporal=SpatialTemporalConfig(dim=a["hidden_size"], depth=a["transformer_depth"],
                                               num_heads=REFERENCE_ST_HEADS, pool_size=pool),
        resampler=ResamplerConfig(num_queries=a["down_num_tokens"], depth=a["resampler_depth"],
                                  num_heads=REFERENCE_RESAMPLER_HEADS, head_dim=REFERENCE_RESAMPLER_HEAD_DIM,
                                  output_dim=a["resampler_dim"]),
    )


def convert_tokenizer_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Reference tokenizer keys -> ``VideoTokenizer`` keys (frame encoder excluded).

    Every ``vit_model.*`` key (a ViT under any of ``VIT_PREFIXES``, an OpenCLIP text tower beside it) is
    skipped here: ``convert_tokenizer`` takes the ViT from these keys or from ``clip_ckpt``.
    """
    known = ("temporal_encoder.", "norm.", "image_proj_model.", "vit_model.")
    unexpected = [k for k in state if not k.startswith(known)]
    check_keys([], unexpected, "Divot tokenizer checkpoint")
    out = {}
    out.update(take_prefix(state, "temporal_encoder.", "temporal_encoder.", CLIP_BLOCK_RULES))
    out.update(take_prefix(state, "norm.", "spatial_norm."))
    out.update(take_prefix(state, "image_proj_model.down_sampler.", "resampler.", RESAMPLER_RULES))
    st = {k: v for k, v in state.items()
          if k.startswith("image_proj_model.") and not k.startswith("image_proj_model.down_sampler.")}
    out.update(take_prefix(st, "image_proj_model.", "spatial_temporal."))
    return out


def convert_tokenizer(tokenizer_ckpt: str | Path, clip_ckpt: str | Path | None,
                      config: TokenizerConfig | None = None) -> VideoTokenizer:
    """Build a ``VideoTokenizer`` holding the released weights, loaded strictly.

    ``clip_ckpt`` gives the OpenCLIP ``visual.*`` weights (``vit_model.*`` keys in the tokenizer file are
    then ignored). If omitted, the tokenizer file must carry the ViT in the OpenCLIP ``visual.*`` layout under
    exactly one of ``vit_model.model.visual.`` (the reference implementation), ``vit_model.visual.`` or
    ``vit_model.``; OpenCLIP text-tower keys beside it are ignored. Otherwise ``ValueError``.
    """
    config = config or tokenizer_preset("paper")
    config.frame_encoder.trainable = False
    state = read_checkpoint(tokenizer_ckpt)
    if clip_ckpt is None:  # find the ViT before building the model, so a file without one fails at once
        vit, vit_prefix = vit_state_from_tokenizer(state, str(tokenizer_ckpt))
    model = VideoTokenizer(config)
    ours = convert_tokenizer_state(state)
    own_keys = {k for k in model.state_dict() if not k.startswith("frame_encoder.")}
    if isinstance(model.output_norm, torch.nn.BatchNorm1d):
        raise ValueError("the released tokenizer has no output batch norm: use output_norm='none'")
    check_keys(sorted(own_keys - set(ours)), sorted(set(ours) - own_keys), str(tokenizer_ckpt))
    load_state_dict_strict(
        torch.nn.ModuleDict({k: getattr(model, k) for k in
                             ("temporal_encoder", "spatial_norm", "spatial_temporal", "resampler")}),
        ours, str(tokenizer_ckpt),
    )
    if clip_ckpt is not None:
        n_vit = sum(k.startswith("vit_model.") for k in state)
        if n_vit:
            logger.info("ignoring %d vit_model.* key(s) in %s: the ViT comes from %s",
                        n_vit, tokenizer_ckpt, clip_ckpt)
        model.frame_encoder.load_open_clip(read_checkpoint(clip_ckpt), where=str(clip_ckpt))
    else:
        model.frame_encoder.load_open_clip(vit, where=f"{tokenizer_ckpt} ({vit_prefix}*)")
    logger.info("converted tokenizer from %s", tokenizer_ckpt)
    return model.eval()


def vit_state_from_tokenizer(state: dict[str, torch.Tensor],
                             where: str) -> tuple[dict[str, torch.Tensor], str]:
    """The ViT a tokenizer file carries, as OpenCLIP ``visual.*`` keys, and the prefix it was found under.

    Each ``vit_model.*`` key belongs to the longest of ``VIT_PREFIXES`` it starts with. Text-tower keys of an
    OpenCLIP model nested beside its ``visual`` (``vit_model.model.transformer.*``, ``...logit_scale``) are
    dropped with a logged count. Raises ``ValueError`` unless exactly one nesting holds the ViT.
    """
    groups: dict[str, list[str]] = {p: [] for p in VIT_PREFIXES}
    for key in state:
        if key.startswith("vit_model."):
            groups[next(p for p in VIT_PREFIXES if key.startswith(p))].append(key)
    # Keys that only match "vit_model." are the ViT itself, or the text tower of the CLIP model whose visual
    # tower lies deeper (the CLIP root is the nesting minus "visual."); without a deeper visual, only a text
    # tower under "vit_model.model." is unambiguous.
    root = "vit_model." if groups[VIT_PREFIXES[1]] and not groups[VIT_PREFIXES[0]] else "vit_model.model."
    text = [k for k in groups[VIT_PREFIXES[2]]
            if k.startswith(root) and k[len(root):].startswith(CLIP_TEXT_TOWER_NAMES)]
    text_keys = set(text)
    groups[VIT_PREFIXES[2]] = [k for k in groups[VIT_PREFIXES[2]] if k not in text_keys]
    found = [p for p in VIT_PREFIXES if groups[p]]
    if not found:
        raise ValueError(f"{where}: no ViT keys under any of {', '.join(p + '*' for p in VIT_PREFIXES)}"
                         f"{f' (only {len(text)} text-tower key(s))' if text else ''}: "
                         "pass the OpenCLIP checkpoint with --clip-ckpt")
    if len(found) > 1:
        seen = "; ".join(f"{p}* ({len(groups[p])} key(s), e.g. {groups[p][0]})" for p in found)
        raise ValueError(f"{where}: ViT keys under more than one nesting: {seen}; expected exactly one of "
                         f"{', '.join(p + '*' for p in VIT_PREFIXES)}: "
                         "pass the OpenCLIP checkpoint with --clip-ckpt")
    prefix = found[0]
    if text:
        logger.info("ignoring %d OpenCLIP text-tower key(s) under %s* in %s", len(text), root, where)
    return {"visual." + k[len(prefix):]: state[k] for k in groups[prefix]}, prefix
