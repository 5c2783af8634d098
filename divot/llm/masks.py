"""Attention masks: causal everywhere, bidirectional inside each block of generation queries.

The LLM receives a 4D additive mask (b, 1, s, s): 0 = attend, ``finfo(dtype).min`` = blocked (transformers
uses a 4D mask as given). A batch without generation queries needs only causal + padding: it gets its padding
mask (b, s) instead, from which transformers builds the causal mask itself (cheaper; flash / SDPA kernels can
run). Both give the same attention (``tests/llm/test_masks.py``). Row i may see column j when j <= i and j is not padding, or when i and j are query
positions of the same generated clip. Padded rows keep their causal view of real tokens, as in the reference.

Two inputs describe the same thing:
  - ours: an attention mask (b, s) (1 attend, 0 padding) and a boolean ``gen_mask`` (b, s) of query positions;
  - the reference's 2D convention: one (b, s) tensor with 1 attend, 0 padding, -1 query positions.
A block is a run of consecutive query positions; with ``block_size`` a run is further cut into blocks of that
many positions (and must be a multiple of it), so two abutting clips stay separate.
"""

from __future__ import annotations

import torch


def query_block_ids(gen_mask: torch.Tensor, block_size: int | None = None) -> torch.Tensor:
    """Block index per position (b, s) int64: 0 outside query blocks, 1, 2, ... for each block of a row."""
    if gen_mask.ndim != 2:
        raise ValueError(f"gen_mask must be (b, s), got {tuple(gen_mask.shape)}")
    gen = gen_mask.bool()
    prev = torch.nn.functional.pad(gen[:, :-1], (1, 0), value=False)
    starts = gen & ~prev  # (b, s) first position of each run
    run_id = starts.long().cumsum(-1)  # (b, s)
    if block_size is None:
        return torch.where(gen, run_id, 0)
    # Offset of each position inside its run -> cut runs into blocks of block_size.
    pos = torch.arange(gen.shape[1], device=gen.device).expand_as(run_id)
    run_start = torch.where(starts, pos, 0).cummax(-1).values  # (b, s) start of the latest run
    offset = pos - run_start
    # Number each block by (sequential) runs and chunks inside them.
    new_block = gen & (offset % block_size == 0)
    block_id = new_block.long().cumsum(-1)
    lengths = _run_lengths(gen)
    bad = lengths[lengths > 0] % block_size
    if bad.any():
        raise ValueError(f"query runs must be multiples of block_size={block_size}, got run lengths "
                         f"{sorted(set(lengths[lengths > 0].tolist()))}")
    return torch.where(gen, block_id, 0)


def _run_lengths(gen: torch.Tensor) -> torch.Tensor:
    """Lengths of all runs of True, flattened (any order)."""
    flat = torch.nn.functional.pad(gen.long(), (1, 1)).diff(dim=-1)  # (b, s+1): +1 run start, -1 run end
    starts = (flat == 1).nonzero()
    ends = (flat == -1).nonzero()
    return ends[:, 1] - starts[:, 1]


def allowed_attention(attention_mask: torch.Tensor, gen_mask: torch.Tensor | None = None,
                      block_size: int | None = None) -> torch.Tensor:
    """Boolean (b, s, s): True where query row i may attend to key column j."""
    if attention_mask.ndim != 2:
        raise ValueError(f"attention_mask must be (b, s), got {tuple(attention_mask.shape)}")
    b, s = attention_mask.shape
    valid = attention_mask.bool()  # (b, s)
    causal = torch.ones(s, s, dtype=torch.bool, device=attention_mask.device).tril()  # (s, s)
    allowed = causal[None] & valid[:, None, :]  # (b, s, s)
    if gen_mask is not None:
        if gen_mask.shape != attention_mask.shape:
            raise ValueError(f"gen_mask {tuple(gen_mask.shape)} must match attention_mask {(b, s)}")
        blocks = query_block_ids(gen_mask & valid, block_size)  # (b, s)
        same = (blocks[:, :, None] == blocks[:, None, :]) & (blocks[:, :, None] > 0)  # (b, s, s)
        allowed = allowed | same
    return allowed


def to_additive(allowed: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Boolean (b, s, s) or (b, 1, s, s) -> additive (b, 1, s, s): 0 attend, finfo(dtype).min blocked."""
    if allowed.ndim == 3:
        allowed = allowed[:, None]
    mask = torch.zeros(allowed.shape, dtype=dtype, device=allowed.device)
    return mask.masked_fill(~allowed, torch.finfo(dtype).min)


def build_attention_mask_4d(attention_mask: torch.Tensor, gen_mask: torch.Tensor | None = None,
                            block_size: int | None = None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Additive mask (b, 1, s, s) from a padding mask (b, s) (1 attend, 0 pad) and query positions (b, s)."""
    return to_additive(allowed_attention(attention_mask, gen_mask, block_size), dtype)


def reference_mask_to_4d(mask_2d: torch.Tensor, block_size: int | None = None,
                         dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The reference's 2D convention (1 attend, 0 pad, -1 query positions) -> additive mask (b, 1, s, s)."""
    values = set(mask_2d.unique().tolist())
    if not values <= {-1, 0, 1}:
        raise ValueError(f"reference mask values must be in {{-1, 0, 1}}, got {sorted(values)}")
    return build_attention_mask_4d(mask_2d != 0, mask_2d == -1, block_size, dtype)


def rebase_additive(mask_4d: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """An additive mask in another dtype (blocked stays ``finfo(dtype).min``, never -inf)."""
    if mask_4d.dtype == dtype:
        return mask_4d
    return to_additive(mask_4d == 0, dtype)


def has_queries(gen_mask: torch.Tensor | None) -> bool:
    """True when some row has generation query positions (their bidirectional blocks need the 4D mask)."""
    return gen_mask is not None and bool(gen_mask.any())


def llm_mask(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The mask handed to a ``transformers`` LLM: a padding mask (b, s) as it is (the LLM makes it causal), an
    additive mask (b, 1, s, s) in the activations' ``dtype``."""
    if mask.ndim == 2:
        return mask
    if mask.ndim == 4:
        return rebase_additive(mask, dtype)
    raise ValueError(f"attention mask must be a padding mask (b, s) or additive (b, 1, s, s), got {tuple(mask.shape)}")
