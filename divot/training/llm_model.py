"""Building the Divot-LLM for a training stage: preset / base LLM / saved model, LoRA, frozen parts, export.

LoRA (peft) wraps ``model.llm`` in place: adapters on ``lora.target_modules``, the norms as
``modules_to_save`` and ``lora.train_fully`` (embed_tokens, lm_head) trained as they are. ``export_model``
merges the adapters and writes a plain Hugging Face LLM + the projections with ``DivotLLM.save_pretrained``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from divot.config import config_from_dict
from divot.hub import CONFIG_NAME
from divot.llm import LLM_PRESETS, DivotLLM, llm_preset
from divot.training.llm_config import LLMTrainConfig, LoRAConfig

logger = logging.getLogger(__name__)


def build_model(cfg: LLMTrainConfig) -> DivotLLM:
    """The stage's starting model (float32): a preset around a fresh or given base LLM, or a saved DivotLLM."""
    torch.manual_seed(cfg.seed)  # the same random initialisation on every rank and every resume
    if cfg.model in LLM_PRESETS:
        if cfg.llm:
            return DivotLLM.from_llm(cfg.llm, cfg.tokenizer or cfg.llm, llm_preset(cfg.model))
        tokenizer = None
        if cfg.tokenizer:
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(cfg.tokenizer)
        return DivotLLM.from_preset(cfg.model, tokenizer)
    if cfg.llm or cfg.tokenizer:
        raise ValueError(f"model={cfg.model!r} is a saved DivotLLM: it brings its own LLM and tokenizer; "
                         "unset llm and tokenizer")
    path = Path(cfg.model)
    if not (path / CONFIG_NAME).is_file():
        raise FileNotFoundError(f"model: {cfg.model!r} is neither a preset ({', '.join(sorted(LLM_PRESETS))}) "
                                "nor a DivotLLM directory (config.json missing)")
    return DivotLLM.from_pretrained(path)


def apply_lora(model: DivotLLM, lora: LoRAConfig) -> None:
    """Wrap ``model.llm`` with peft LoRA adapters (base weights frozen, ``train_fully`` modules trainable)."""
    from peft import LoraConfig, get_peft_model

    names = {name.rsplit(".", 1)[-1] for name, _ in model.llm.named_modules()}
    missing = [m for m in [*lora.target_modules, *lora.train_fully] if m not in names]
    if missing:
        raise ValueError(f"lora: the LLM has no module named {missing}; its linear layers are "
                         f"{sorted({n.rsplit('.', 1)[-1] for n, m in model.llm.named_modules() if isinstance(m, nn.Linear)})}")
    peft_config = LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                             target_modules=list(lora.target_modules), modules_to_save=list(lora.modules_to_save),
                             bias="none")
    model.llm = get_peft_model(model.llm, peft_config)
    for name, module in model.llm.named_modules():
        if name.rsplit(".", 1)[-1] in lora.train_fully:
            module.requires_grad_(True)


def prepare_for_training(model: DivotLLM, cfg: LLMTrainConfig) -> list[tuple[str, nn.Parameter]]:
    """LoRA / full fine-tuning, the stage's frozen parts, gradient checkpointing; the trainable parameters."""
    model.requires_grad_(True)
    if cfg.lora.enabled:
        apply_lora(model, cfg.lora)
    parts = {"input_proj": model.input_proj, "gmm_head": model.gmm_head, "llm": model.llm}
    for part in cfg.frozen:
        parts[part].requires_grad_(False)
    if cfg.gradient_checkpointing:
        model.llm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    total = sum(p.numel() for p in model.parameters())
    logger.info("stage %s: training %.2fM of %.2fM parameters (%s; frozen: %s)", cfg.stage,
                sum(p.numel() for _, p in named) / 1e6, total / 1e6,
                f"LoRA r={cfg.lora.r}" if cfg.lora.enabled else "full fine-tuning", ", ".join(cfg.frozen) or "none")
    return named


def merged(model: DivotLLM) -> DivotLLM:
    """The model with its LoRA adapters merged into the LLM (in place; a no-op without LoRA)."""
    from peft import PeftModel

    if isinstance(model.llm, PeftModel):
        model.llm = model.llm.merge_and_unload()
    return model


def export_model(model: DivotLLM, out_dir: str | Path) -> Path:
    """Merge LoRA and save a ``DivotLLM.from_pretrained`` directory (plain HF ``llm/`` + the projections)."""
    model = merged(model)
    was_training = model.training
    model.eval()
    path = model.save_pretrained(out_dir)
    model.train(was_training)
    return path


def read_checkpoint(folder: str | Path) -> tuple[LLMTrainConfig, dict[str, torch.Tensor]]:
    """The run config and the full model state dict of a training checkpoint (one process or DeepSpeed)."""
    folder = Path(folder)
    trainer = folder / "trainer.pt"
    if not trainer.is_file():
        raise FileNotFoundError(f"{folder} is not a training checkpoint (no trainer.pt)")
    payload = torch.load(trainer, map_location="cpu", weights_only=False)
    if payload.get("kind") != "divot-llm":
        raise ValueError(f"{folder} is not a Divot-LLM training checkpoint")
    cfg = config_from_dict(LLMTrainConfig, payload["config"])
    if "model" in payload:
        return cfg, payload["model"]
    ds_dir = folder / "deepspeed"
    states = ds_dir / "mp_rank_00_model_states.pt"
    if not states.is_file():
        raise FileNotFoundError(f"{folder}: no model weights (neither in trainer.pt nor {states})")
    module = torch.load(states, map_location="cpu", weights_only=False)["module"]
    if any(t.numel() == 0 for t in module.values()):  # ZeRO-3: parameters live in the optimiser shards
        from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

        module = get_fp32_state_dict_from_zero_checkpoint(str(folder), tag="deepspeed")
    return cfg, module


def load_checkpoint_model(folder: str | Path) -> tuple[LLMTrainConfig, DivotLLM]:
    """Rebuild the trained model of a checkpoint (LoRA adapters included, not merged), strictly."""
    cfg, state = read_checkpoint(folder)
    model = build_model(cfg)
    prepare_for_training(model, cfg)
    model.load_state_dict(state, strict=True)
    return cfg, model.eval()
