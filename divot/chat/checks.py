"""Checks and helpers behind ``Divot`` (``divot.chat.model``): token shapes of the parts, decoding options, and
seeding one call without touching the global random state."""

from __future__ import annotations

from contextlib import contextmanager

import torch

DECODING_KEYS = ("greedy", "temperature", "top_p", "max_new_tokens")


def check_token_shapes(tokenizer, llm, detokenizer=None) -> None:
    """Raise a ``ValueError`` naming both sides when the parts disagree on tokens per clip x token width. A part
    given as None (absent, or not readable yet) is not checked."""
    lm = (llm.config.num_queries, llm.config.token_dim)
    tok = (tokenizer.config.num_tokens, tokenizer.config.token_dim) if tokenizer is not None else lm
    if tok != lm:
        raise ValueError(f"the tokenizer gives {tok[0]} x {tok[1]} tokens per clip but the LLM expects "
                         f"{lm[0]} x {lm[1]} (num_queries x token_dim)")
    if detokenizer is not None:
        de = (detokenizer.config.num_tokens, detokenizer.config.token_dim)
        if de != lm:
            raise ValueError(f"the LLM produces {lm[0]} x {lm[1]} tokens per clip but the de-tokenizer expects "
                             f"{de[0]} x {de[1]} (num_tokens x token_dim)")


def check_decoding(decoding: dict) -> None:
    """Reject misspelt decoding options (``temprature=``) instead of ignoring them."""
    unknown = sorted(set(decoding) - set(DECODING_KEYS))
    if unknown:
        raise ValueError(f"unknown decoding option(s) {unknown}; expected some of {list(DECODING_KEYS)}")


@contextmanager
def seeded(seed: int | None, device: torch.device):
    """Seed torch's global generators inside the block only (the state outside is restored); None: no-op."""
    if seed is None:
        yield
        return
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield
