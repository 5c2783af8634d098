"""Convert a released Divot de-tokenizer checkpoint (DynamiCrafter layout) into this toolkit's modules.

Reference prefixes: ``diffusion_model.*`` (3D U-Net, our keys except ``temopral_conv`` -> ``temporal_conv``),
``image_proj_model.*`` (condition resampler, IP-Adapter Perceiver layout -> ``PerceiverResampler``),
``first_stage_model.*`` (LDM VAE -> ``diffusers.AutoencoderKL``). Schedule buffers (``betas``,
``alphas_cumprod``, ...) are recomputed, not loaded: if present they are checked against ours. The
``video_tokenizer.*`` weights belong to the tokenizer (``divot.convert.tokenizer``) and are skipped here.

``divot convert detokenizer`` also writes the reference's published generation settings (``PUBLISHED``: the
reference DDIM, 50 steps, eta 1.0, guidance 7.5, rescale 0.7) as ``generation.json``
(``generation_defaults_path`` says where).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import AutoencoderKL

from divot.convert.keys import RESAMPLER_RULES, take_prefix
from divot.diffusion.condition import ConditionResampler
from divot.diffusion.config import (
    ConditionResamplerConfig,
    ScheduleConfig,
    UNetConfig,
    VAEConfig,
    condition_preset,
    unet_preset,
    vae_preset,
)
from divot.diffusion.schedule import make_alphas_cumprod
from divot.diffusion.unet import VideoUNet
from divot.diffusion.vae import build_vae, convert_reference_vae_state
from divot.hub import check_keys
from divot.tokenizer.frame_encoder import read_checkpoint

logger = logging.getLogger(__name__)

UNET_PREFIX = "diffusion_model."
CONDITION_PREFIX = "image_proj_model."
VAE_PREFIX = "first_stage_model."
# Declared, not silently dropped: these live elsewhere or are recomputed.
SKIPPED_PREFIXES = ("video_tokenizer.",)
SCHEDULE_BUFFERS = frozenset({
    "betas", "alphas_cumprod", "alphas_cumprod_prev", "sqrt_alphas_cumprod", "sqrt_one_minus_alphas_cumprod",
    "log_one_minus_alphas_cumprod", "sqrt_recip_alphas_cumprod", "sqrt_recipm1_alphas_cumprod",
    "posterior_variance", "posterior_log_variance_clipped", "posterior_mean_coef1", "posterior_mean_coef2",
    "logvar", "scale_arr",
})
UNET_RULES: list[tuple[str, str]] = [(r"\.temopral_conv\.", ".temporal_conv.")]


@dataclass
class ConvertedDetokenizer:
    unet: VideoUNet
    condition: ConditionResampler
    vae: AutoencoderKL | None


def _check_schedule(state: dict[str, torch.Tensor], schedule: ScheduleConfig, where: str) -> None:
    if "alphas_cumprod" not in state:
        return
    ours = make_alphas_cumprod(schedule)
    theirs = state["alphas_cumprod"].to(torch.float64)
    if theirs.shape != ours.shape or not torch.allclose(theirs, ours, rtol=1e-4, atol=1e-6):
        raise ValueError(f"{where}: the checkpoint's alphas_cumprod does not match the schedule {schedule}")


def convert_detokenizer_state(state: dict[str, torch.Tensor], vae_config: VAEConfig | None = None,
                              schedule: ScheduleConfig | None = None, ignore_prefixes: tuple[str, ...] = (),
                              where: str = "de-tokenizer checkpoint") -> dict[str, dict[str, torch.Tensor]]:
    """Reference keys -> {"unet": ..., "condition": ..., "vae": ...} state dicts under our / diffusers' names.

    "vae" is present only if the checkpoint has ``first_stage_model.*`` keys (needs ``vae_config``; the
    paper VAE if omitted). Keys outside the known prefixes raise a ``ValueError`` naming them, unless
    they start with one of ``ignore_prefixes``.
    """
    known = (UNET_PREFIX, CONDITION_PREFIX, VAE_PREFIX, *SKIPPED_PREFIXES, *ignore_prefixes)
    unexpected = [k for k in state if not k.startswith(known) and k not in SCHEDULE_BUFFERS]
    check_keys([], unexpected, where)
    _check_schedule(state, schedule or ScheduleConfig(), where)
    skipped = sum(k.startswith(SKIPPED_PREFIXES + tuple(ignore_prefixes)) for k in state)
    if skipped:
        logger.info("%s: skipped %d tensor(s) under %s", where, skipped, SKIPPED_PREFIXES + tuple(ignore_prefixes))
    parts = {
        "unet": take_prefix(state, UNET_PREFIX, "", UNET_RULES),
        "condition": take_prefix(state, CONDITION_PREFIX, "", RESAMPLER_RULES),
    }
    vae_state = {k: v for k, v in state.items() if k.startswith(VAE_PREFIX)}
    if vae_state:
        parts["vae"] = convert_reference_vae_state(vae_state, vae_config or vae_preset("paper"), where)
    return parts


def convert_detokenizer(checkpoint: str | Path | dict[str, torch.Tensor], unet_config: UNetConfig | None = None,
                        condition_config: ConditionResamplerConfig | None = None,
                        vae_config: VAEConfig | None = None, schedule: ScheduleConfig | None = None,
                        require_vae: bool = False, ignore_prefixes: tuple[str, ...] = (),
                        dtype: torch.dtype = torch.float32) -> ConvertedDetokenizer:
    """Build the U-Net, condition resampler (and VAE, if the checkpoint has one) holding the released weights.

    ``checkpoint``: a ``.safetensors`` / ``.bin`` path (pickles read with ``weights_only=True``) or a state dict.
    Every part is loaded strictly; errors name the missing / unexpected keys. Configs default to the paper's.
    Modules are built on the meta device and take the checkpoint's tensors (cast to ``dtype``): no random
    initialisation of 1.4B parameters first.
    """
    if isinstance(checkpoint, dict):
        state, where = checkpoint, "de-tokenizer state dict"
    else:
        state, where = read_checkpoint(checkpoint), str(checkpoint)
    for prefix, part in ((UNET_PREFIX, "U-Net"), (CONDITION_PREFIX, "condition resampler")):
        if not any(k.startswith(prefix) for k in state):
            raise ValueError(f"{where}: no {prefix}* keys: this is not a de-tokenizer checkpoint ({part} missing)")
    if require_vae and not any(k.startswith(VAE_PREFIX) for k in state):
        raise ValueError(f"{where}: no {VAE_PREFIX}* keys (the VAE) in the checkpoint")
    vae_config = vae_config or vae_preset("paper")
    parts = convert_detokenizer_state(state, vae_config, schedule, ignore_prefixes, where)
    unet_config = unet_config or unet_preset("paper")
    condition_config = condition_config or condition_preset("paper")
    unet = _materialise(lambda: VideoUNet(unet_config), parts["unet"], f"{where} ({UNET_PREFIX}*)", dtype)
    condition = _materialise(lambda: ConditionResampler(condition_config), parts["condition"],
                             f"{where} ({CONDITION_PREFIX}*)", dtype)
    vae = None
    if "vae" in parts:
        vae = _materialise(lambda: build_vae(vae_config), parts["vae"], f"{where} ({VAE_PREFIX}*)", dtype)
    logger.info("converted de-tokenizer from %s (VAE: %s)", where, "yes" if vae is not None else "no")
    return ConvertedDetokenizer(unet.eval(), condition.eval(), vae.eval() if vae is not None else None)


def generation_defaults_path(out: str | Path) -> Path:
    """Where ``divot convert detokenizer --out OUT`` writes the published ``generation.json``.

    An output folder named ``detokenizer`` is taken to be the ``detokenizer/`` part of a Divot model directory,
    so the file goes to the model directory's root, beside it (``model/detokenizer`` -> ``model/generation.json``,
    where ``Divot.from_pretrained("model")`` reads it). Any other output folder gets it inside, beside its
    ``config.json`` (``divot-detokenizer`` -> ``divot-detokenizer/generation.json``), to be moved to the root of the
    model directory the de-tokenizer joins."""
    from divot.chat.generation_defaults import GENERATION_FILE

    out = Path(out)
    return (out.parent if out.name == "detokenizer" else out) / GENERATION_FILE


def _materialise(build: Callable[[], torch.nn.Module], state: dict[str, torch.Tensor], where: str,
                 dtype: torch.dtype) -> torch.nn.Module:
    """Build on the meta device, check keys and shapes strictly, then adopt the given tensors."""
    with torch.device("meta"):
        module = build()
    own = module.state_dict()
    check_keys([k for k in own if k not in state], [k for k in state if k not in own], where)
    bad = [f"{k}: model {tuple(own[k].shape)} vs file {tuple(v.shape)}"
           for k, v in state.items() if tuple(own[k].shape) != tuple(v.shape)]
    if bad:
        raise ValueError(f"{where}: shape mismatch for {len(bad)} tensor(s): " + "; ".join(bad[:20]))
    module.load_state_dict({k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()},
                           strict=True, assign=True)
    left = [n for n, t in (*module.named_parameters(), *module.named_buffers()) if t.is_meta]
    if left:  # a non-persistent buffer would need its own initialisation
        raise ValueError(f"{where}: tensors not in the state dict stayed uninitialised: {left[:10]}")
    return module

