"""Divot-LLM configuration and its named presets (``paper``, ``tiny``).

``DivotLLMConfig`` describes what Divot adds around a stock Hugging Face causal LM: the clip layout (queries
per clip, token width), the input projection (token_dim -> hidden -> hidden), the output projection / GMM head
(hidden -> out_dim -> out_dim, with ``out_dim = 2*k*d + k`` derived, never typed), the loss weights and the
decoding defaults. The LLM itself is a plain HF directory with its own ``config.json``; ``base`` describes the
architecture used when a preset builds one from scratch with random weights (tests, the shapes world).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field


@dataclass
class BaseLLMConfig:
    """Shape of a stock HF decoder-only LM, built with random weights by ``DivotLLM.from_preset``.

    ``vocab_size`` is the base vocabulary before the Divot tokens are added (a tokenizer given at build time
    overrides it). ``model_type`` is any ``transformers`` decoder (``mistral``, ``llama``, ``qwen2``, ...).
    """

    model_type: str = "mistral"
    vocab_size: int = 32000
    hidden_size: int = 4096
    intermediate_size: int = 14336
    num_layers: int = 32
    num_heads: int = 32
    num_kv_heads: int = 8
    max_position_embeddings: int = 32768
    rope_theta: float = 10000.0
    rms_norm_eps: float = 1e-5
    sliding_window: int | None = 4096
    tie_word_embeddings: bool = False

    def to_hf(self, vocab_size: int | None = None, **overrides):
        """A ``transformers`` config of this shape (``vocab_size`` overrides the base vocabulary)."""
        from transformers import AutoConfig

        kwargs = dict(
            vocab_size=vocab_size or self.vocab_size, hidden_size=self.hidden_size,
            intermediate_size=self.intermediate_size, num_hidden_layers=self.num_layers,
            num_attention_heads=self.num_heads, num_key_value_heads=self.num_kv_heads,
            max_position_embeddings=self.max_position_embeddings, rms_norm_eps=self.rms_norm_eps,
            rope_parameters={"rope_type": "default", "rope_theta": self.rope_theta},
            tie_word_embeddings=self.tie_word_embeddings, bos_token_id=1, eos_token_id=2,
        )
        if self.model_type == "mistral":
            kwargs["sliding_window"] = self.sliding_window
        kwargs.update(overrides)
        return AutoConfig.for_model(self.model_type, **kwargs)


@dataclass
class DivotLLMConfig:
    """Divot-LLM around a causal LM of width ``hidden_size``.

    Axis letters: q = ``num_queries`` tokens per clip, d = ``token_dim``, k = ``gmm_components``.
    """

    hidden_size: int = 4096  # the LLM's width (checked against the LLM when loading)
    num_queries: int = 64  # frame tokens per clip: <frame_00000> .. <frame_{q-1}>
    token_dim: int = 256  # d: width of a clip token from the video tokenizer
    gmm_components: int = 16  # k
    var_min: float = 1e-5  # variances are softplus(.) clamped at >= var_min
    lm_loss_weight: float = 1.0
    gmm_loss_weight: float = 1.0
    # Inference defaults (DESIGN section 6).
    var_scale: float = 0.1  # variances are multiplied by this when sampling generated tokens
    temperature: float = 0.7
    top_p: float = 0.5
    max_new_tokens: int = 256
    # How prompts are split into tokenizer calls (divot.llm.sequences): "reference" (the released weights) or
    # "pieces" (models this toolkit trained before; a saved config without the key loads as "pieces").
    sequence_format: str = "reference"
    base: BaseLLMConfig | None = field(default=None)  # only for building a random LLM from a preset

    def __post_init__(self):
        for name in ("hidden_size", "num_queries", "token_dim", "gmm_components", "max_new_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.var_min <= 0 or self.var_scale <= 0:
            raise ValueError(f"var_min and var_scale must be > 0, got {self.var_min}, {self.var_scale}")
        if self.sequence_format not in ("reference", "pieces"):
            raise ValueError(f"sequence_format must be 'reference' or 'pieces', got {self.sequence_format!r}")
        if self.base is not None and self.base.hidden_size != self.hidden_size:
            raise ValueError(f"base.hidden_size {self.base.hidden_size} != hidden_size {self.hidden_size}")

    @property
    def out_dim(self) -> int:
        """GMM parameters per token: k*d means, k*d variances, k logits (8208 at paper size)."""
        return 2 * self.gmm_components * self.token_dim + self.gmm_components

    @property
    def input_widths(self) -> tuple[int, int, int]:
        """Input projection: token_dim -> hidden -> hidden (Linear, GELU, Linear)."""
        return (self.token_dim, self.hidden_size, self.hidden_size)

    @property
    def output_widths(self) -> tuple[int, int, int]:
        """Output projection: hidden -> out_dim -> out_dim (Linear, GELU, Linear)."""
        return (self.hidden_size, self.out_dim, self.out_dim)


LLM_PRESETS: dict[str, DivotLLMConfig] = {
    # Mistral-7B-Instruct-v0.1 shapes; the released checkpoints.
    "paper": DivotLLMConfig(
        hidden_size=4096, num_queries=64, token_dim=256, gmm_components=16,
        base=BaseLLMConfig(),
    ),
    # A tiny Mistral for the shapes world (the tiny tokenizer gives 16 tokens x 32 per clip).
    "tiny": DivotLLMConfig(
        hidden_size=128, num_queries=16, token_dim=32, gmm_components=4, max_new_tokens=32,
        base=BaseLLMConfig(vocab_size=512, hidden_size=128, intermediate_size=256, num_layers=2, num_heads=4,
                           num_kv_heads=2, max_position_embeddings=2048, sliding_window=None),
    ),
}


def llm_preset(name: str) -> DivotLLMConfig:
    """A copy of a named preset (``paper``, ``tiny``)."""
    if name not in LLM_PRESETS:
        raise ValueError(f"unknown Divot-LLM preset {name!r}; choose from {sorted(LLM_PRESETS)}")
    return copy.deepcopy(LLM_PRESETS[name])
