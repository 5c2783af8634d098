"""``divot convert {tokenizer,detokenizer,llm} ...``: import released checkpoints."""

from __future__ import annotations

import argparse
import gc
import json
import logging
from pathlib import Path

logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="what", metavar="WHAT")
    sub.required = True
    p = sub.add_parser("tokenizer", help="Divot_tokenizer.bin [+ OpenCLIP ViT-H/14] -> a VideoTokenizer directory",
                       description="Convert the released tokenizer (and the OpenCLIP vision tower) to "
                                   "config.json + model.safetensors.")
    p.add_argument("--tokenizer-ckpt", required=True, type=Path,
                   help="Divot_tokenizer.bin (or .safetensors) with temporal_encoder.*, norm.*, image_proj_model.*")
    p.add_argument("--clip-ckpt", type=Path, default=None,
                   help="OpenCLIP checkpoint with visual.* keys (open_clip_pytorch_model.bin); if omitted, the "
                        "tokenizer file must carry the ViT (OpenCLIP visual.* layout) under exactly one of "
                        "vit_model.model.visual.*, vit_model.visual.* or vit_model.*")
    p.add_argument("--config", type=Path, default=None,
                   help="JSON with the reference constructor arguments ('tokenizer_config') and optionally the "
                        "OpenCLIP 'open_clip_vision_cfg'; default: the paper preset")
    p.add_argument("--out", required=True, type=Path, help="output directory")
    p.set_defaults(_convert=_convert_tokenizer)

    d = sub.add_parser("detokenizer", help="Divot_detokenizer_stage{1,2}.bin -> a Detokenizer directory",
                       description="Convert a released de-tokenizer (U-Net diffusion_model.*, condition resampler "
                                   "image_proj_model.*, VAE first_stage_model.*) to config.json + model.safetensors, "
                                   "and write the reference's published generation settings (reference DDIM, 50 "
                                   "steps, eta 1.0, guidance 7.5, rescale 0.7) as generation.json.")
    d.add_argument("--ckpt", required=True, type=Path, help="Divot_detokenizer_stage1.bin or _stage2.bin")
    d.add_argument("--tokenizer", required=True, type=Path,
                   help="converted tokenizer directory: gives the unconditional (all-grey clip) tokens")
    d.add_argument("--config", type=Path, default=None,
                   help="JSON with the reference 'unet', 'image_proj_model' and 'ddconfig' arguments "
                        "(default: the paper configuration)")
    d.add_argument("--out", required=True, type=Path,
                   help="output directory; generation.json goes to its parent when it is named detokenizer (the "
                        "detokenizer/ of a Divot model directory: MODEL/detokenizer -> MODEL/generation.json), "
                        "otherwise inside it (move it to the root of the model directory it joins)")
    d.set_defaults(_convert=_convert_detokenizer)

    m = sub.add_parser("llm", help="merged llm/ + agent/pytorch_model.bin + tokenizer -> a DivotLLM directory",
                       description="Convert a released Divot-LLM (Divot_pretrain / sft_comp / sft_gen): the merged "
                                   "Hugging Face LLM, the agent projections (input_resampler.*, output_resampler.*) "
                                   "and the tokenizer with the Divot tokens.")
    m.add_argument("--llm-dir", required=True, type=Path, help="the merged Hugging Face LLM directory (llm/)")
    m.add_argument("--agent-ckpt", required=True, type=Path,
                   help="agent/pytorch_model.bin (or .safetensors) with input_resampler.* and output_resampler.*")
    m.add_argument("--tokenizer-dir", required=True, type=Path,
                   help="tokenizer directory with the Divot tokens (cvlm_mistral_instruct_tokenizer)")
    m.add_argument("--num-queries", type=int, default=64,
                   help="frame tokens per clip (not stored in the weights; 64 for the released models)")
    m.add_argument("--dtype", choices=("bfloat16", "float32", "float16"), default="bfloat16",
                   help="dtype of the written weights (default: bfloat16, half the size of the released float32)")
    m.add_argument("--max-shard-gib", type=float, default=2.0,
                   help="largest output shard in GiB: the conversion streams the LLM shard by shard "
                        "and holds about one output shard in memory")
    m.add_argument("--out", required=True, type=Path, help="output directory")
    m.set_defaults(_convert=_convert_llm)


def _convert_tokenizer(args) -> int:
    from divot.convert.tokenizer import config_from_reference, convert_tokenizer

    config = None
    if args.config is not None:
        if not args.config.is_file():
            raise FileNotFoundError(f"config file not found: {args.config}")
        data = json.loads(args.config.read_text())
        ref = data.get("tokenizer_config", data)
        config = config_from_reference(ref, data.get("open_clip_vision_cfg"))
    model = convert_tokenizer(args.tokenizer_ckpt, args.clip_ckpt, config)
    model.save_pretrained(args.out)
    n = sum(p.numel() for p in model.parameters())
    logger.info("wrote %s (%.2f M parameters)", args.out, n / 1e6)
    return 0


def _convert_detokenizer(args) -> int:
    import torch

    from divot.chat.generation_defaults import PUBLISHED
    from divot.convert.detokenizer import convert_detokenizer, generation_defaults_path
    from divot.diffusion.config import (
        condition_config_from_reference,
        unet_config_from_reference,
        vae_config_from_reference,
    )
    from divot.diffusion.detokenizer import Detokenizer, DetokenizerConfig, detokenizer_preset
    from divot.tokenizer import VideoTokenizer

    config = detokenizer_preset("paper")
    if args.config is not None:
        if not args.config.is_file():
            raise FileNotFoundError(f"config file not found: {args.config}")
        data = json.loads(args.config.read_text())
        missing = [k for k in ("unet", "image_proj_model", "ddconfig") if k not in data]
        if missing:
            raise ValueError(f"{args.config}: missing section(s) {missing}")
        vae = vae_config_from_reference(data["ddconfig"], data.get("scale_factor", 0.18215))
        config = DetokenizerConfig(
            unet=unet_config_from_reference(data["unet"]),
            condition=condition_config_from_reference(data["image_proj_model"]), vae=vae,
            num_tokens=data.get("num_tokens", config.num_tokens),
            frame_size=data.get("frame_size", config.frame_size),
        )
    tokenizer = VideoTokenizer.from_pretrained(args.tokenizer)
    config.num_tokens = tokenizer.config.num_tokens
    with torch.device("meta"):
        model = Detokenizer(config)
    model.uncond_tokens = torch.zeros(1, config.num_tokens, config.token_dim)
    with torch.no_grad():
        model.set_unconditional_tokens(tokenizer)
    del tokenizer  # 3.2 GB at paper size: never held next to the de-tokenizer
    gc.collect()
    parts = convert_detokenizer(args.ckpt, config.unet, config.condition, config.vae, config.schedule,
                                require_vae=True)
    model.unet, model.condition, model.vae = parts.unet, parts.condition, parts.vae.requires_grad_(False).eval()
    del parts
    model.save_pretrained(args.out)
    logger.info("wrote %s (%.1f M parameters)", args.out, sum(p.numel() for p in model.parameters()) / 1e6)
    generation = PUBLISHED.save(generation_defaults_path(args.out))
    logger.info("wrote %s: the published generation settings (%s)", generation, PUBLISHED.describe())
    return 0


def _convert_llm(args) -> int:
    import torch

    from divot.convert.llm_stream import convert_llm_to_dir

    convert_llm_to_dir(args.llm_dir, args.agent_ckpt, args.tokenizer_dir, args.out, args.num_queries,
                       getattr(torch, args.dtype), max_shard_bytes=int(args.max_shard_gib * 1024**3))
    logger.info("wrote %s (%s)", args.out, args.dtype)
    return 0


def run(args) -> int:
    return args._convert(args)
