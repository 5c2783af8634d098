"""What fits where: accelerator memory for the paper-size parts, per dtype, and which set-ups fit 24 / 40 / 80 GiB.

    python benchmarks/memory_fit.py --out benchmarks/results/memory_fit.json

Every part is built from its ``paper`` preset on the meta device (``accelerate.init_empty_weights``): no weights
are allocated and nothing is downloaded. Weights are counted per dtype: float32, bfloat16, and for the LLM
bitsandbytes 8-bit (int8 weights + a float32 scale per output row) and 4-bit NF4 (4 bits + a float32 absmax per
64 weights) on the decoder's linear layers; embeddings, norms and ``lm_head`` stay in 16 bits, as
``DivotLLM.from_pretrained(quantization=...)`` keeps them. Activations are measured by running each workload's
forward pass on meta tensors while counting the bytes of the tensors alive at once (attention as a fused kernel,
as on a GPU: no (s x s) score matrix). The workloads:

* comprehension: the tokenizer on 8 clips in one batch (``encode``'s default), then the LLM on 8 clips x
  (64 frame tokens + 2 markers) + 256 text tokens, generating 256 more (KV cache in 16 bits);
* generation: the de-tokenizer's U-Net on one 16-frame 256 x 256 clip (latents (1, 4, 16, 32, 32); classifier-
  free guidance runs the conditional and the unconditional pass one after the other, as ``divot.diffusion``
  does), then the VAE decoding the 16 frames in one batch.

A set-up fits when its resident weights + the largest phase's activations + ``--overhead-gib`` (the CUDA context,
cuBLAS workspaces and allocator slack) are at most the card's memory.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import weakref
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import provenance  # noqa: E402

logger = logging.getLogger("benchmarks.memory_fit")

GIB = 2**30
CARDS_GIB = (24, 40, 80)
BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}
NF4_BLOCK = 64  # bitsandbytes' 4-bit block size (absmax in float32, no double quantization)
CLIPS, CLIP_TOKENS, TEXT_TOKENS, NEW_TOKENS = 8, 64, 256, 256
FRAMES, FRAME_SIZE = 16, 256


class LiveBytes(TorchDispatchMode):
    """Peak bytes of tensors alive at once: every fresh output (not a view, not an in-place result) counts
    until it is freed. Run on meta tensors it measures a forward pass without computing it."""

    def __init__(self):
        super().__init__()
        self.live = self.peak = 0

    def _free(self, nbytes: int) -> None:
        self.live -= nbytes

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = {id(t) for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)}
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor) and id(t) not in inputs and t._base is None:
                nbytes = t.untyped_storage().nbytes()
                self.live += nbytes
                self.peak = max(self.peak, self.live)
                weakref.finalize(t, self._free, nbytes)
        return out


@contextmanager
def fused_attention():
    """Attention as a fused kernel (flash / memory-efficient) computes it: only the output is allocated."""
    original = F.scaled_dot_product_attention

    def fused(q, k, v, *args, **kwargs):
        return q.new_empty(*q.shape[:-1], v.shape[-1])

    F.scaled_dot_product_attention = fused
    try:
        yield
    finally:
        F.scaled_dot_product_attention = original


def peak_activation_bytes(run) -> int:
    with torch.no_grad(), fused_attention(), LiveBytes() as tracker:
        run()
    return tracker.peak


# -- the parts, on meta ---------------------------------------------------------------------------------------
def build_parts() -> dict[str, nn.Module]:
    from accelerate import init_empty_weights
    from transformers import AutoModelForCausalLM

    from divot.constants import SPECIAL_TOKENS
    from divot.diffusion.detokenizer import Detokenizer, detokenizer_preset
    from divot.llm.config import llm_preset
    from divot.llm.gmm import GMMHead
    from divot.tokenizer.model import VideoTokenizer

    llm_config = llm_preset("paper")
    with init_empty_weights(include_buffers=True):
        tokenizer = VideoTokenizer.from_preset("paper")
        detokenizer = Detokenizer(detokenizer_preset("paper"))
        hf = llm_config.base.to_hf(vocab_size=llm_config.base.vocab_size + len(SPECIAL_TOKENS))
        llm = AutoModelForCausalLM.from_config(hf)
        d, h = llm_config.token_dim, llm_config.hidden_size
        projections = nn.ModuleDict({
            "input_proj": nn.Sequential(nn.Linear(d, h), nn.GELU(), nn.Linear(h, h)),
            "gmm_head": GMMHead(h, d, llm_config.gmm_components, llm_config.var_min),
        })
    return {"tokenizer": tokenizer, "llm": llm, "projections": projections, "condition": detokenizer.condition,
            "unet": detokenizer.unet, "vae": detokenizer.vae}


def count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def llm_weight_bytes(llm: nn.Module, mode: str) -> dict:
    """Bytes of the LLM's weights: "bf16" / "fp32" / "fp16", or "8bit" / "4bit" (decoder linears quantized)."""
    quantizable = [m for name, m in llm.named_modules() if isinstance(m, nn.Linear) and ".layers." in name]
    q_params = sum(m.weight.numel() for m in quantizable)
    q_rows = sum(m.out_features for m in quantizable)
    q_bias = sum(m.bias.numel() for m in quantizable if m.bias is not None)
    total = count(llm)
    kept = total - q_params  # embeddings, lm_head, norms (+ biases)
    if mode in BYTES:
        return {"params": total, "bytes": total * BYTES[mode]}
    if mode == "8bit":  # LLM.int8: int8 weights + a float32 scale per output row; the rest in float16
        quantized = q_params + 4 * q_rows
    elif mode == "4bit":  # NF4: 4 bits + a float32 absmax per block; the rest in bfloat16
        quantized = q_params // 2 + 4 * (q_params // NF4_BLOCK)
    else:
        raise ValueError(mode)
    return {"params": total, "quantized_params": q_params, "bytes": quantized + 2 * (kept - q_bias) + 2 * q_bias}


# -- activations ------------------------------------------------------------------------------------------------
def activations(parts: dict[str, nn.Module], dtype_name: str) -> dict[str, int]:
    """Peak bytes of activations per phase with the parts in ``dtype_name`` (fp32 / bf16)."""
    from divot.diffusion.config import condition_preset
    from divot.diffusion.vae import decode_latents

    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype_name]
    meta = torch.device("meta")
    out = {}
    tokenizer = parts["tokenizer"].to(dtype)
    clips = torch.empty(CLIPS, tokenizer.config.num_frames, 3, FRAME_SIZE, FRAME_SIZE, device=meta, dtype=dtype)
    out["tokenizer"] = peak_activation_bytes(lambda: tokenizer(clips))

    llm = parts["llm"].to(torch.bfloat16)  # the LLM runs in 16 bits in every set-up
    s = CLIPS * (CLIP_TOKENS + 2) + 2 + TEXT_TOKENS
    embeds = torch.empty(1, s, llm.config.hidden_size, device=meta, dtype=torch.bfloat16)
    out["llm_prefill"] = peak_activation_bytes(lambda: llm(inputs_embeds=embeds, use_cache=True))
    out["kv_cache_final"] = kv_cache_bytes(llm.config, s + NEW_TOKENS)
    out["llm_tokens"] = s

    unet, condition, vae = (parts[k].to(dtype) for k in ("unet", "condition", "vae"))
    cc = condition_preset("paper")
    tokens = torch.empty(1, CLIP_TOKENS, cc.input_dim, device=meta, dtype=dtype)
    context = torch.empty(1, cc.num_queries, cc.output_dim, device=meta, dtype=dtype)
    latents = torch.empty(1, 4, FRAMES, FRAME_SIZE // 8, FRAME_SIZE // 8, device=meta, dtype=dtype)
    t = torch.zeros(1, dtype=torch.long, device=meta)
    out["condition"] = peak_activation_bytes(lambda: condition(tokens))
    # CFG: the conditional output waits (one latent-sized tensor) while the unconditional pass runs.
    out["unet_step"] = peak_activation_bytes(lambda: unet(latents, t, context, fs=3)) + latents.nbytes * 2
    out["vae_decode"] = peak_activation_bytes(lambda: decode_latents(vae, latents))
    return out


def kv_cache_bytes(config, tokens: int, nbytes: int = 2) -> int:
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    return 2 * config.num_hidden_layers * config.num_key_value_heads * head_dim * tokens * nbytes


# -- set-ups --------------------------------------------------------------------------------------------------
SETUPS = [
    # name, workload, tokenizer dtype, LLM mode, de-tokenizer dtype (None: not loaded), de-tokenizer offload
    ("comprehension, tokenizer fp32, LLM bf16", "comprehension", "fp32", "bf16", None, False),
    ("comprehension, all bf16", "comprehension", "bf16", "bf16", None, False),
    ("comprehension, tokenizer bf16, LLM 4-bit", "comprehension", "bf16", "4bit", None, False),
    ("everything, tokenizer + de-tokenizer fp32, LLM bf16", "everything", "fp32", "bf16", "fp32", False),
    ("everything, all bf16", "everything", "bf16", "bf16", "bf16", False),
    ("everything, all bf16, de-tokenizer CPU offload", "everything", "bf16", "bf16", "bf16", True),
    ("everything, bf16, LLM 8-bit", "everything", "bf16", "8bit", "bf16", False),
    ("everything, bf16, LLM 4-bit", "everything", "bf16", "4bit", "bf16", False),
    ("everything, bf16, LLM 4-bit, de-tokenizer CPU offload", "everything", "bf16", "4bit", "bf16", True),
    ("everything, tokenizer + de-tokenizer fp32, LLM 4-bit", "everything", "fp32", "4bit", "fp32", False),
]


def setup_row(name, workload, tok_dtype, llm_mode, detok_dtype, offload, params, llm_bytes, acts) -> dict:
    projection_bytes = params["projections"] * (4 if llm_mode == "fp32" else 2)
    resident = params["tokenizer"] * BYTES[tok_dtype] + llm_bytes[llm_mode] + projection_bytes
    comp_act = max(acts[tok_dtype]["tokenizer"], acts[tok_dtype]["llm_prefill"] + acts[tok_dtype]["kv_cache_final"])
    phases = {"comprehension": resident + comp_act}
    if detok_dtype is not None:
        b, a = BYTES[detok_dtype], acts[detok_dtype]
        detok = {k: params[k] * b for k in ("condition", "unet", "vae")}
        if offload:  # the de-tokenizer waits on the CPU; one of its parts at a time on the device
            phases.update({f"de-tokenizer {k}": resident + detok[k] + a[act]
                           for k, act in (("condition", "condition"), ("unet", "unet_step"), ("vae", "vae_decode"))})
        else:
            resident += sum(detok.values())
            phases["comprehension"] += sum(detok.values())
            phases["de-tokenizer"] = resident + max(a["condition"], a["unet_step"], a["vae_decode"])
    peak_phase = max(phases, key=phases.get)
    return {"setup": name, "workload": workload, "tokenizer": tok_dtype, "llm": llm_mode,
            "detokenizer": detok_dtype or "not loaded", "detokenizer_offload": offload,
            "resident_weights_gib": resident / GIB, "phases_gib": {k: v / GIB for k, v in phases.items()},
            "peak_phase": peak_phase, "peak_gib": phases[peak_phase] / GIB}


def markdown(rows: list[dict], overhead: float) -> str:
    head = ("| set-up | weights on the device (GiB) | peak (GiB, + overhead) | largest phase | "
            + " | ".join(f"{c} GiB" for c in CARDS_GIB) + " |")
    lines = [head, "|" + "---|" * (4 + len(CARDS_GIB))]
    for r in rows:
        total = r["peak_gib"] + overhead
        fits = ["yes" if total <= c else "no" for c in CARDS_GIB]
        lines.append(f"| {r['setup']} | {r['resident_weights_gib']:.1f} | {total:.1f} | {r['peak_phase']} | "
                     + " | ".join(fits) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=None, help="write the JSON here")
    p.add_argument("--overhead-gib", type=float, default=1.0,
                   help="CUDA context, library workspaces and allocator slack added to every set-up")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    record = provenance(argv, __file__)
    parts = build_parts()
    params = {name: count(module) for name, module in parts.items()}
    llm_bytes = {mode: llm_weight_bytes(parts["llm"], mode)["bytes"] for mode in ("fp32", "bf16", "8bit", "4bit")}
    acts = {dtype: activations(parts, dtype) for dtype in ("fp32", "bf16")}
    rows = [setup_row(*setup, params, llm_bytes, acts) for setup in SETUPS]
    weights = {name: {"params": n, "fp32_gib": 4 * n / GIB, "bf16_gib": 2 * n / GIB} for name, n in params.items()}
    weights["llm"].update({f"{mode}_gib": b / GIB for mode, b in llm_bytes.items()})
    record.update({
        "workloads": {"comprehension": {"clips": CLIPS, "clip_tokens": CLIP_TOKENS, "text_tokens": TEXT_TOKENS,
                                        "new_tokens": NEW_TOKENS, "llm_tokens": acts["bf16"]["llm_tokens"]},
                      "generation": {"frames": FRAMES, "frame_size": FRAME_SIZE, "cfg": "two batch-1 passes"}},
        "overhead_gib": args.overhead_gib, "cards_gib": list(CARDS_GIB), "weights": weights,
        "activations_gib": {d: {k: (v / GIB if k != "llm_tokens" else v) for k, v in a.items()}
                            for d, a in acts.items()},
        "setups": rows,
    })
    for name, w in weights.items():
        logger.info("%-12s %14s params  fp32 %6.2f GiB  bf16 %6.2f GiB", name, f"{w['params']:,}", w["fp32_gib"],
                    w["bf16_gib"])
    logger.info("LLM: 8-bit %.2f GiB, 4-bit %.2f GiB", llm_bytes["8bit"] / GIB, llm_bytes["4bit"] / GIB)
    for d, a in record["activations_gib"].items():
        logger.info("activations %s: %s", d, {k: round(v, 3) for k, v in a.items()})
    table = markdown(rows, args.overhead_gib)
    record["table_markdown"] = table
    logger.info("\n%s", table)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(record, indent=2) + "\n")
        logger.info("wrote %s", args.out)
    return record


if __name__ == "__main__":
    main()
