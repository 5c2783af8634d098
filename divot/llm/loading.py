"""Placing the Divot-LLM's causal LM on the devices people have: ``device_map`` and bitsandbytes quantization.

``device_map`` goes to ``transformers`` (through ``accelerate``): ``"auto"``, ``"balanced"``, ``{"": "cuda:0"}``
or a dict of module names -> device / ``"cpu"`` / ``"disk"``. ``quantization`` ("8bit", "4bit") loads the LLM's
linear layers through bitsandbytes (the ``quant`` extra: ``pip install 'divot[quant]'``); "4bit" is NF4 with
bf16 compute ("8bit" runs its matmuls in float16). The output embedding (``lm_head``, which holds the Divot token rows) stays unquantized, as do the
Divot projections and GMM head, which are not part of the LLM at all.

A quantized or dispatched LLM is never moved or cast again (bitsandbytes forbids ``.to(dtype)``; moving a
dispatched model would strand accelerate's hooks): ``DivotLLM`` moves only its projections then.
"""

from __future__ import annotations

import importlib.util
import logging

import torch
from torch import nn

logger = logging.getLogger(__name__)

QUANTIZATIONS = ("8bit", "4bit")
# The LLM's dtype (embeddings, norms, lm_head, activations) when none is given: LLM.int8 multiplies in float16
# (bf16 inputs would be cast, with a bitsandbytes warning, at every matmul); NF4 computes in bfloat16.
QUANTIZED_DTYPES = {"8bit": torch.float16, "4bit": torch.bfloat16}
# Module names bitsandbytes must leave in full precision. HF's default skip list (the output embedding) is
# replaced, not extended, by an explicit one, so the output embedding's name is added to this list at load time.
KEEP_UNQUANTIZED = ("lm_head",)


def is_bitsandbytes_available() -> bool:
    return importlib.util.find_spec("bitsandbytes") is not None


def require_bitsandbytes() -> None:
    """Raise one clear error when the ``quant`` extra is missing."""
    if not is_bitsandbytes_available():
        raise ImportError("quantization needs bitsandbytes: pip install 'divot[quant]' (or pip install bitsandbytes)")


def check_quantization(quantization: str | None) -> None:
    if quantization is not None and quantization not in QUANTIZATIONS:
        raise ValueError(f"quantization must be None or one of {QUANTIZATIONS}, got {quantization!r}")


def output_embedding_names(hf_config) -> list[str]:
    """Names of the modules that hold the output embedding in a model of ``hf_config`` (built on meta)."""
    from accelerate import init_empty_weights
    from transformers import AutoModelForCausalLM

    with init_empty_weights():
        model = AutoModelForCausalLM.from_config(hf_config)
    head = model.get_output_embeddings()
    return [name for name, module in model.named_modules() if head is not None and module is head]


def quantization_config(quantization: str, compute_dtype: torch.dtype = torch.bfloat16,
                        skip_modules: list[str] | tuple[str, ...] = KEEP_UNQUANTIZED,
                        cpu_offload: bool = False):
    """The ``transformers.BitsAndBytesConfig`` for "8bit" or "4bit" (NF4, ``compute_dtype`` matmuls).

    ``skip_modules`` stay in full precision; ``cpu_offload`` lets an 8-bit model keep some modules on the CPU
    in float32 (a ``device_map`` that mixes an accelerator with "cpu" / "disk")."""
    from transformers import BitsAndBytesConfig

    check_quantization(quantization)
    skip = sorted(set(skip_modules))
    if quantization == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=skip,
                                  llm_int8_enable_fp32_cpu_offload=cpu_offload)
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_compute_dtype=compute_dtype, bnb_4bit_quant_type="nf4",
                              llm_int8_skip_modules=skip, llm_int8_enable_fp32_cpu_offload=cpu_offload)


def _mixes_cpu_and_accelerator(device_map) -> bool:
    if not isinstance(device_map, dict):
        return False
    kinds = {"offload" if str(d) in ("cpu", "disk") else "accelerator" for d in device_map.values()}
    return kinds == {"offload", "accelerator"}


def llm_load_kwargs(hf_config, dtype: torch.dtype | None, device_map=None, quantization: str | None = None,
                    max_memory: dict | None = None, offload_folder: str | None = None) -> dict:
    """Keyword arguments for ``AutoModelForCausalLM.from_pretrained``: dtype, placement, quantization.

    ``dtype`` defaults to float32, or ``QUANTIZED_DTYPES[quantization]`` (also the 4-bit compute dtype)."""
    check_quantization(quantization)
    if quantization is not None and device_map is None:
        raise ValueError("a quantized LLM is loaded straight onto its devices: give device or device_map")
    kwargs: dict = {"dtype": dtype or (QUANTIZED_DTYPES[quantization] if quantization else torch.float32)}
    if device_map is not None:
        kwargs["device_map"] = device_map
    if max_memory is not None:
        kwargs["max_memory"] = max_memory
    if offload_folder is not None:
        kwargs["offload_folder"] = str(offload_folder)
    if quantization is not None:
        require_bitsandbytes()
        skip = [*KEEP_UNQUANTIZED, *output_embedding_names(hf_config)]
        kwargs["quantization_config"] = quantization_config(quantization, kwargs["dtype"], skip,
                                                            cpu_offload=_mixes_cpu_and_accelerator(device_map))
    return kwargs


# -- what a loaded LLM looks like -----------------------------------------------------------------------------
def _base(llm: nn.Module) -> nn.Module:
    return llm.get_base_model() if hasattr(llm, "get_base_model") else llm


def is_quantized(llm: nn.Module) -> bool:
    """Whether ``llm`` (or the model under a PEFT wrapper) was loaded through a ``transformers`` quantizer."""
    base = _base(llm)
    return bool(getattr(base, "is_quantized", False) or getattr(base, "hf_quantizer", None) is not None)


def is_dispatched(llm: nn.Module) -> bool:
    """Whether accelerate placed ``llm`` with a ``device_map`` (it then carries hooks that move tensors)."""
    return any(hasattr(module, "_hf_hook") for module in _base(llm).modules())


def is_placed(llm: nn.Module) -> bool:
    """Quantized or dispatched: the LLM must not be moved or cast after loading."""
    return is_quantized(llm) or is_dispatched(llm)


def execution_device(module: nn.Module) -> torch.device:
    """Where ``module`` computes: accelerate's execution device when it is hooked (its weights may sit on
    "meta" when offloaded to the CPU or disk), otherwise the device of its first real parameter."""
    hook = getattr(module, "_hf_hook", None)
    for h in getattr(hook, "hooks", None) or ([hook] if hook is not None else []):
        device = getattr(h, "execution_device", None)
        if device is not None:
            return torch.device(device) if not isinstance(device, int) else torch.device("cuda", device)
    for tensor in (*module.parameters(), *module.buffers()):
        if tensor.device.type != "meta":
            return tensor.device
    raise ValueError(f"{type(module).__name__} has no parameters off the meta device and no execution device")


def last_hidden_device(llm: nn.Module) -> torch.device:
    """Where the decoder's last hidden states come out: its final norm's device (else the output embedding's)."""
    base = _base(llm)
    norm = getattr(base.get_decoder(), "norm", None) if hasattr(base, "get_decoder") else None
    return execution_device(norm if isinstance(norm, nn.Module) else base.get_output_embeddings())
