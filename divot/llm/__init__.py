"""Divot-LLM: token layout, projections, GMM head, masks, sequence building, generation.

Names are imported on first use (``divot._lazy_exports``): the configs and presets need neither torch nor
transformers.
"""

from typing import TYPE_CHECKING

from divot import _lazy_exports

__all__ = [
    "GENERATION_TEMPLATES", "GMM_MODES", "LLM_PRESETS", "BaseLLMConfig", "DivotLLM", "DivotLLMConfig",
    "DivotTokenIds", "GMMHead", "GMMParams", "GeneratedVideo", "LLMCollator", "LLMSample", "SequenceBuilder",
    "add_special_tokens", "build_attention_mask_4d", "build_shapes_tokenizer", "gmm_nll", "gmm_predict",
    "llm_preset", "reference_mask_to_4d", "resize_embeddings", "split_gmm_params", "train_text_tokenizer",
    "write_generated_tokens",
]

__getattr__, __dir__ = _lazy_exports(globals(), {
    **dict.fromkeys(["LLM_PRESETS", "BaseLLMConfig", "DivotLLMConfig", "llm_preset"], "divot.llm.config"),
    **dict.fromkeys(["GeneratedVideo", "write_generated_tokens"], "divot.llm.generation"),
    **dict.fromkeys(["GMM_MODES", "GMMHead", "GMMParams", "gmm_nll", "gmm_predict", "split_gmm_params"],
                    "divot.llm.gmm"),
    **dict.fromkeys(["build_attention_mask_4d", "reference_mask_to_4d"], "divot.llm.masks"),
    "DivotLLM": "divot.llm.model",
    **dict.fromkeys(["GENERATION_TEMPLATES", "LLMCollator", "LLMSample", "SequenceBuilder"], "divot.llm.sequences"),
    **dict.fromkeys(["build_shapes_tokenizer", "train_text_tokenizer"], "divot.llm.text_tokenizer"),
    **dict.fromkeys(["DivotTokenIds", "add_special_tokens", "resize_embeddings"], "divot.llm.tokens"),
})

if TYPE_CHECKING:
    from divot.llm.config import LLM_PRESETS, BaseLLMConfig, DivotLLMConfig, llm_preset
    from divot.llm.generation import GeneratedVideo, write_generated_tokens
    from divot.llm.gmm import GMM_MODES, GMMHead, GMMParams, gmm_nll, gmm_predict, split_gmm_params
    from divot.llm.masks import build_attention_mask_4d, reference_mask_to_4d
    from divot.llm.model import DivotLLM
    from divot.llm.sequences import GENERATION_TEMPLATES, LLMCollator, LLMSample, SequenceBuilder
    from divot.llm.text_tokenizer import build_shapes_tokenizer, train_text_tokenizer
    from divot.llm.tokens import DivotTokenIds, add_special_tokens, resize_embeddings
