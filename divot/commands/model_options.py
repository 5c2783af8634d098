"""Options shared by the chat-style commands (``ask``, ``caption``, ``chat``, ``generate``, ``story``): the model,
the device, the decoding and rendering settings, and loading a ``Divot`` from them. Not a subcommand."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

logger = logging.getLogger(__name__)


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="shapes-tiny",
                        help="a Divot model directory (tokenizer/, llm/, detokenizer/) or a bundled model name "
                             "(default: shapes-tiny)")
    parser.add_argument("--device", default="auto",
                        help="auto (cuda if available, else cpu), cpu, cuda, cuda:1 ... (default: auto)")
    parser.add_argument("--dtype", choices=["auto", "float32", "bfloat16", "float16"], default="auto",
                        help="LLM weights: auto = bfloat16 on cuda, float32 on cpu (default: auto)")
    parts = parser.add_argument_group("placement and precision of each part (see docs/memory.md)")
    parts.add_argument("--tokenizer-dtype", choices=["auto", "float32", "bfloat16", "float16"], default="auto",
                       help="video tokenizer weights: auto = its frozen ViT's matrices in bfloat16 where bfloat16 is "
                            "fast, the rest float32 (default: auto)")
    parts.add_argument("--detokenizer-dtype", choices=["float32", "bfloat16", "float16"], default=None,
                       help="de-tokenizer weights (default: as saved, float32)")
    parts.add_argument("--detokenizer-device", default=None,
                       help="the de-tokenizer's device when it differs from --device (e.g. cuda:1 or cpu)")
    parts.add_argument("--offload-detokenizer", action="store_true",
                       help="keep the de-tokenizer on the CPU, moving each module to the device only while it runs")
    parts.add_argument("--quantization", choices=["8bit", "4bit"], default=None,
                       help="load the LLM in 8 or 4 bits with bitsandbytes (pip install 'divot[quant]')")
    parts.add_argument("--device-map", default=None,
                       help="spread the LLM over devices with accelerate: auto, balanced, sequential")


def add_comprehension_arguments(parser: argparse.ArgumentParser) -> None:
    """What ``ask``, ``caption`` and ``chat`` share after their positional arguments: clips, model, decoding."""
    parser.add_argument("--max-clips", type=int, default=None, help="at most this many 2-second clips (20)")
    add_model_arguments(parser)
    add_decoding_arguments(parser)


def add_decoding_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seed", type=int, default=0, help="sampling seed: same seed, same answer (default 0)")
    parser.add_argument("--greedy", action="store_true", help="greedy decoding instead of sampling")
    parser.add_argument("--temperature", type=float, default=None,
                        help="sampling temperature (default: the model's, 0.7 for the reference settings)")
    parser.add_argument("--top-p", type=float, default=None, help="nucleus sampling top-p (default: the model's, 0.5)")
    parser.add_argument("--max-new-tokens", type=int, default=None, help="longest answer in tokens (default: the model's)")


def add_rendering_arguments(parser: argparse.ArgumentParser) -> None:
    """How generated clips are made (``generate``, ``story``): GMM sampling and the de-tokenizer's sampler. The
    sampler settings default to None: the model directory's generation.json, else the library defaults."""
    from divot.chat.generation_defaults import GENERATION_FILE, LIBRARY_DEFAULTS

    lib, model = LIBRARY_DEFAULTS, f"default: the model's {GENERATION_FILE}, else"
    parser.add_argument("--steps", type=int, default=None, help=f"de-tokenizer sampling steps ({model} {lib.num_steps})")
    parser.add_argument("--guidance", type=float, default=None,
                        help=f"classifier-free guidance scale, 1: off ({model} {lib.guidance_scale:g})")
    parser.add_argument("--rescale", type=float, default=None,
                        help=f"guidance rescale, 0: off ({model} {lib.guidance_rescale:g})")
    parser.add_argument("--eta", type=float, default=None,
                        help=f"DDIM noise of the reference / ddim samplers, 0: deterministic ({model} {lib.eta:g})")
    parser.add_argument("--var-scale", type=float, default=None,
                        help="GMM variance scale when sampling tokens (default: the model's, 0.1)")
    parser.add_argument("--sampler", default=None,
                        help=f"reference (the published DDIM), dpmsolver++, ddim, euler, unipc or ddpm ({model} "
                             f"{lib.sampler}; the converted released weights' {GENERATION_FILE} says reference)")
    parser.add_argument("--mode", choices=["sample", "mean", "top"], default="sample",
                        help="how tokens come from the GMM (default: sample)")


def rendering_options(args) -> dict:
    """Keyword arguments for ``Divot.generate_video`` / ``tell_story`` from ``add_rendering_arguments`` options;
    None (not given) leaves the setting to the model's generation defaults."""
    from divot.diffusion.config import SAMPLERS

    if args.sampler is not None and args.sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {args.sampler!r}; choose from {list(SAMPLERS)}")
    if args.steps is not None and args.steps < 1:
        raise ValueError(f"--steps must be >= 1, got {args.steps}")
    if args.var_scale is not None and args.var_scale <= 0:
        raise ValueError(f"--var-scale must be > 0, got {args.var_scale}")
    if args.rescale is not None and not 0 <= args.rescale <= 1:
        raise ValueError(f"--rescale must be in [0, 1], got {args.rescale}")
    if args.eta is not None and args.eta < 0:
        raise ValueError(f"--eta must be >= 0, got {args.eta}")
    return {"num_steps": args.steps, "guidance_scale": args.guidance, "guidance_rescale": args.rescale,
            "eta": args.eta, "var_scale": args.var_scale, "sampler": args.sampler, "mode": args.mode}


def decoding_options(args) -> dict:
    """Keyword arguments for ``Divot.ask`` / ``caption`` / ``chat`` from ``add_decoding_arguments`` options."""
    if args.temperature is not None and args.temperature <= 0:
        raise ValueError(f"--temperature must be > 0, got {args.temperature}")
    if args.top_p is not None and not 0 < args.top_p <= 1:
        raise ValueError(f"--top-p must be in (0, 1], got {args.top_p}")
    if args.max_new_tokens is not None and args.max_new_tokens < 1:
        raise ValueError(f"--max-new-tokens must be >= 1, got {args.max_new_tokens}")
    options = {"seed": args.seed, "greedy": args.greedy}
    for key in ("temperature", "top_p", "max_new_tokens"):
        if getattr(args, key) is not None:
            options[key] = getattr(args, key)
    return options


def resolve_device(spec: str):
    """``auto`` -> cuda if available, else cpu; anything else is checked (CUDA must exist for cuda devices)."""
    import torch

    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except RuntimeError as err:
        raise ValueError(f"--device {spec!r} is not a device (use auto, cpu, cuda or cuda:N)") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {spec}: CUDA is not available on this machine")
    return device


def resolve_dtype(spec: str, device):
    import torch

    if spec == "auto":
        return torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[spec]


def check_video(path: Path) -> Path:
    """Fail fast (before loading a model) on a video path that does not exist or is not a file."""
    if not path.exists():
        raise FileNotFoundError(f"video file {path} does not exist")
    if not path.is_file():
        raise ValueError(f"video path {path} is not a file")
    return path


def check_model(spec: str) -> Path:
    """The model directory for ``--model`` (a directory or a bundled name); a one-line error otherwise."""
    from divot.chat.bundled import resolve_model_path

    return resolve_model_path(spec)


def load_model(args):
    """The ``Divot`` named by ``--model`` on ``--device``."""
    from divot.chat import Divot

    root = check_model(args.model)
    device = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype, device)
    detok_device = resolve_device(args.detokenizer_device) if getattr(args, "detokenizer_device", None) else device
    devices = {"tokenizer": device, "llm": device, "detokenizer": detok_device}
    dtypes = {"llm": dtype, "tokenizer": getattr(args, "tokenizer_dtype", "auto"),
              "detokenizer": getattr(args, "detokenizer_dtype", None)}
    options = {"quantization": getattr(args, "quantization", None), "device_map": getattr(args, "device_map", None),
               "offload_detokenizer": getattr(args, "offload_detokenizer", False)}
    logger.info("loading %s on %s (%s)", root, device, str(dtype).removeprefix("torch."))
    return Divot.from_pretrained(root, device=devices, dtype=dtypes, **options)
