"""Divot-LLM: token layout, projections, GMM head, masks, sequence building, generation."""

from divot.llm.config import LLM_PRESETS, BaseLLMConfig, DivotLLMConfig, llm_preset
from divot.llm.generation import GeneratedVideo, write_generated_tokens
from divot.llm.gmm import GMM_MODES, GMMHead, GMMParams, gmm_nll, gmm_predict, split_gmm_params
from divot.llm.masks import build_attention_mask_4d, reference_mask_to_4d
from divot.llm.model import DivotLLM
from divot.llm.sequences import GENERATION_TEMPLATES, LLMCollator, LLMSample, SequenceBuilder
from divot.llm.text_tokenizer import build_shapes_tokenizer, train_text_tokenizer
from divot.llm.tokens import DivotTokenIds, add_special_tokens, resize_embeddings

__all__ = [
    "GENERATION_TEMPLATES", "GMM_MODES", "LLM_PRESETS", "BaseLLMConfig", "DivotLLM", "DivotLLMConfig",
    "DivotTokenIds", "GMMHead", "GMMParams", "GeneratedVideo", "LLMCollator", "LLMSample", "SequenceBuilder",
    "add_special_tokens", "build_attention_mask_4d", "build_shapes_tokenizer", "gmm_nll", "gmm_predict",
    "llm_preset", "reference_mask_to_4d", "resize_embeddings", "split_gmm_params", "train_text_tokenizer",
    "write_generated_tokens",
]
