"""Convert a released Divot-LLM (merged HF ``llm/`` + ``agent/pytorch_model.bin`` + tokenizer) to a ``DivotLLM``.

Reference keys (DESIGN section 7): ``input_resampler.proj.{0,2}.{weight,bias}`` (Linear d->h, GELU, Linear h->h)
and ``output_resampler.proj.{0,2}.{weight,bias}`` (Linear h->out, GELU, Linear out->out, out = 2*k*d + k). Sizes
(d, h, k) are read from the weights; the number of queries per clip is not in them (64 in the paper).
``llm.*`` keys, if the agent file carries the LLM too, are declared and skipped: the LLM comes from its directory.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from divot.convert.keys import take_prefix
from divot.hub import check_keys
from divot.llm.config import DivotLLMConfig
from divot.llm.tokens import check_special_tokens
from divot.tokenizer.frame_encoder import read_checkpoint

logger = logging.getLogger(__name__)

INPUT_PREFIX = "input_resampler.proj."
OUTPUT_PREFIX = "output_resampler.proj."
SKIPPED_PREFIXES = ("llm.",)
AGENT_KEYS = tuple(f"{prefix}{i}.{kind}" for prefix in (INPUT_PREFIX, OUTPUT_PREFIX) for i in (0, 2)
                   for kind in ("weight", "bias"))


def convert_agent_state(state: dict[str, torch.Tensor], where: str = "agent checkpoint") -> dict[str, torch.Tensor]:
    """Reference agent keys -> ``DivotLLM.projections()`` keys (``input_proj.*``, ``gmm_head.proj.*``)."""
    missing = [k for k in AGENT_KEYS if k not in state]
    unexpected = [k for k in state if k not in AGENT_KEYS and not k.startswith(SKIPPED_PREFIXES)]
    check_keys(missing, unexpected, where)
    skipped = sum(k.startswith(SKIPPED_PREFIXES) for k in state)
    if skipped:
        logger.info("%s: skipped %d tensor(s) under %s (the LLM is loaded from its own directory)",
                    where, skipped, SKIPPED_PREFIXES)
    out = take_prefix(state, INPUT_PREFIX, "input_proj.")
    out.update(take_prefix(state, OUTPUT_PREFIX, "gmm_head.proj."))
    return out


def config_from_agent_state(state: dict[str, torch.Tensor], num_queries: int = 64,
                            where: str = "agent checkpoint") -> DivotLLMConfig:
    """Infer hidden size h, token width d and mixture size k from the projection weights."""
    check_keys([k for k in AGENT_KEYS if k not in state], [], where)
    hidden, d = state[INPUT_PREFIX + "0.weight"].shape
    out_dim, hidden_out = state[OUTPUT_PREFIX + "0.weight"].shape
    if tuple(state[INPUT_PREFIX + "2.weight"].shape) != (hidden, hidden) or hidden_out != hidden:
        raise ValueError(f"{where}: inconsistent projection widths: input {hidden}x{d} then "
                         f"{tuple(state[INPUT_PREFIX + '2.weight'].shape)}, output projection from {hidden_out}")
    if tuple(state[OUTPUT_PREFIX + "2.weight"].shape) != (out_dim, out_dim):
        raise ValueError(f"{where}: output projection second layer must be ({out_dim}, {out_dim}), "
                         f"got {tuple(state[OUTPUT_PREFIX + '2.weight'].shape)}")
    k, rest = divmod(out_dim, 2 * d + 1)
    if rest or k < 1:
        raise ValueError(f"{where}: output width {out_dim} is not 2*k*d + k for d = {d}")
    return DivotLLMConfig(hidden_size=hidden, num_queries=num_queries, token_dim=d, gmm_components=k)


def reference_tokenizer_mode(tokenizer_dir: Path) -> dict:
    """``{"legacy": True}`` when ``tokenizer_config.json`` does not set ``legacy``, else ``{}``.

    The reference ran transformers 4, whose sentencepiece Llama tokenizer reads a missing ``legacy`` as True
    (a ``▁`` before a word that follows a special token); transformers 5 reads it as False. The converted folder
    records the mode (``save_text_tokenizer``), so the model keeps the encoding it was trained with."""
    path = tokenizer_dir / "tokenizer_config.json"
    config = json.loads(path.read_text()) if path.is_file() else {}
    if "legacy" in config:
        return {}
    logger.info("%s does not set legacy: using legacy=True, as the reference's transformers 4 did", path)
    return {"legacy": True}


def load_released_tokenizer(tokenizer_dir: str | Path):
    """The released text tokenizer (Divot tokens checked, in the reference's ``legacy`` mode); without a pad token
    it gets its unk token (or eos) as pad, as ``add_special_tokens`` does."""
    from transformers import AutoTokenizer

    tokenizer_dir = Path(tokenizer_dir)
    if not tokenizer_dir.is_dir():
        raise FileNotFoundError(f"tokenizer directory not found: {tokenizer_dir}")
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir), **reference_tokenizer_mode(tokenizer_dir))
    check_special_tokens(tokenizer, str(tokenizer_dir))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.unk_token if tokenizer.unk_token is not None else tokenizer.eos_token
    return tokenizer


def read_agent(agent_ckpt: str | Path, num_queries: int = 64) -> tuple[DivotLLMConfig, dict[str, torch.Tensor]]:
    """The Divot-LLM config inferred from the agent checkpoint and its projections under our key names."""
    state = read_checkpoint(agent_ckpt)
    where = str(agent_ckpt)
    return config_from_agent_state(state, num_queries, where), convert_agent_state(state, where)


def check_vocab(tokenizer, rows: int, tokenizer_dir, llm_dir) -> None:
    """The released tokenizer already holds the Divot tokens: the LLM must have a row for each of them."""
    if len(tokenizer) > rows:
        raise ValueError(f"the tokenizer in {tokenizer_dir} has {len(tokenizer)} tokens but the LLM in {llm_dir} "
                         f"has {rows} embedding rows")


def convert_llm(llm_dir: str | Path, agent_ckpt: str | Path, tokenizer_dir: str | Path, num_queries: int = 64,
                dtype: torch.dtype = torch.bfloat16):
    """A ``DivotLLM`` in memory holding the released weights: the merged HF LLM (strict), the tokenizer with the
    Divot tokens already added, and the two projections from the agent checkpoint (``.bin`` read with
    ``weights_only=True``, or ``.safetensors``), all in ``dtype``.

    This builds the whole LLM (about 14.5 GB in bf16 at paper size); to write a converted directory use
    ``divot.convert.llm_stream.convert_llm_to_dir``, which streams the shards instead."""
    from divot.hub import load_state_dict_strict
    from divot.llm.model import DivotLLM, load_hf_llm_strict

    tokenizer = load_released_tokenizer(tokenizer_dir)
    config, projections = read_agent(agent_ckpt, num_queries)
    llm = load_hf_llm_strict(llm_dir, dtype)
    rows = llm.get_input_embeddings().weight.shape[0]
    check_vocab(tokenizer, rows, tokenizer_dir, llm_dir)
    model = DivotLLM(config, llm, tokenizer)
    load_state_dict_strict(model.projections(), projections, str(agent_ckpt))
    model.to(dtype)
    logger.info("converted Divot-LLM: h=%d, d=%d, k=%d, q=%d, vocab %d", config.hidden_size, config.token_dim,
                config.gmm_components, num_queries, rows)
    return model.eval()
