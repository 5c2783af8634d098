"""Batched inference on a ``DivotLLM``: several prompts decoded, or several questions' options scored, per pass.

Prompts for decoding are left-padded (``sequences.left_pad_prompts``): every row ends with its last real token,
so the next-token logits of all rows sit in the last column. The padding mask (b, s) masks the pad columns for every
query, and positions count from 0 at each row's first real token, as in an unpadded pass; so greedy answers and
option scores equal the one-prompt ones in fp32 (token for token; scores to float tolerance;
tests/test_batch_inference.py). In bf16 the batched and one-prompt passes round differently: scores agree to bf16
precision and a near-tied greedy choice can flip (measured on an H200, benchmarks/RESULTS.md).

- ``generate_ids_batch``: ``transformers``' ``generate`` on the left-padded embeddings. ``generate`` derives the
  positions from the padding mask (cumulative sum) and grows the mask as tokens are added; rows that finish
  early are padded by it, and each row is cut after its first stop id. Sampling draws every row from torch's
  global generator: under one seed a batch is reproducible, but row i does not get the tokens a one-prompt call
  with that seed gets.
- ``score_continuation_ids_batch``: the prompts run once, right-padded: under the causal mask no real token
  sees a pad, so that forward needs no padding mask and keeps the fast causal attention kernels (a padding mask
  made 8 left-padded prompts of 1340 tokens slower than 8 separate passes on the CPU); it keeps the KV cache and
  only the logits at each row's last real column. The cache rows are repeated for each prompt's continuations (5
  rows per EgoSchema question), and all continuations run right-padded in one more forward, the pad columns of
  the prefix masked. A forward outside ``generate`` counts positions from the cache length, so the positions are
  given explicitly (prefix length + offset).
- ``score_continuation_ids_batch_greedy``: the same two passes, also telling whether each continuation is the
  greedy one (the lmms-eval adapter's ``is_greedy``).
- ``score_continuation_ids_reference``: the per-continuation path the batched one replaced (one pass per option
  over a copy of the prefix cache), kept as the reference for tests and benchmarks.
"""

from __future__ import annotations

import copy
import inspect

import torch

from divot.llm.generation import _cache_kwargs
from divot.llm.sequences import pad_prompts


def _chunks(order: list[int], size: int | None) -> list[list[int]]:
    size = size or len(order)
    return [order[i : i + size] for i in range(0, len(order), size)]


def _check_batch_size(batch_size: int | None) -> None:
    if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
        raise ValueError(f"batch_size must be a positive integer or None, got {batch_size!r}")


def _prompt_batch(model, prompts: list, side: str = "left") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Padded (``side``) embeddings (b, s, h), padding mask (b, s) and positions (b, s) on the model's input
    device."""
    batch = pad_prompts(prompts, model.token_ids.pad, side=side)
    device = model.device
    ids = batch["input_ids"].to(device)
    embeds = model.embed(ids, batch["cmp_mask"].to(device), batch["cmp_clips"].to(device))  # (b, s, h)
    return embeds, batch["attention_mask"].to(device), batch["position_ids"].to(device)


def _until_stop(row: list[int], stops: set[int]) -> list[int]:
    """The row up to and including its first stop id (what a one-prompt ``generate`` returns)."""
    for i, token in enumerate(row):
        if token in stops:
            return row[: i + 1]
    return row


@torch.no_grad()
def generate_ids_batch(model, prompts: list, batch_size: int | None = None, **options) -> list[list[int]]:
    """New token ids after each prompt (``LLMSample``s without generation queries), as ``generate_ids`` gives them
    for one: up to and including the first stop id. ``options``: those of ``generate_ids``.

    Prompts are sorted by length and decoded ``batch_size`` at a time (None: all at once), so a chunk holds
    prompts of similar length (little padding); the answers come back in the order of ``prompts``."""
    _check_batch_size(batch_size)
    if not prompts:
        return []
    config = model.generation_config(**options)
    stops = set(config.eos_token_id)
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    out: list[list[int] | None] = [None] * len(prompts)
    for chunk in _chunks(order, batch_size):
        embeds, mask, _ = _prompt_batch(model, [prompts[i] for i in chunk])
        new = model.llm.generate(inputs_embeds=embeds, attention_mask=mask, generation_config=config)  # (b, n)
        for i, row in zip(chunk, new.tolist(), strict=True):
            out[i] = _until_stop(row, stops)
    return out


def _cache_of(out):
    return out.cache if getattr(out, "cache", None) is not None else out.past_key_values


def _logits_at(llm, columns: torch.Tensor) -> dict:
    """Ask the causal LM for the logits of ``columns`` (1D, every row) only, where its forward supports it."""
    if "logits_to_keep" in inspect.signature(llm.forward).parameters:
        return {"logits_to_keep": columns}  # a 1D index tensor: these sequence positions of every row
    return {}


@torch.no_grad()
def score_continuation_ids_batch(model, prompts: list, continuations: list[list[list[int]]],
                                 normalize: bool = False) -> list[torch.Tensor]:
    """Log-likelihood of each continuation (token ids) after its prompt: one (n_i,) float32 CPU tensor per
    prompt, the sum over the continuation's tokens (``normalize``: divided by its token count).

    Two forward passes whatever the number of prompts and continuations: the left-padded prompts (KV cache kept),
    then every continuation, right-padded, over its prompt's cache row."""
    scores, _, counts = _score_flat(model, prompts, continuations, normalize, suppress=None)
    return list(scores.split(counts)) if counts else []


@torch.no_grad()
def score_continuation_ids_batch_greedy(model, prompts: list, continuations: list[list[list[int]]],
                                        suppress: list[int], normalize: bool = False
                                        ) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``score_continuation_ids_batch`` plus, per continuation, whether greedy decoding would produce it: every
    token is the argmax of its next-token distribution with the ``suppress`` ids left out (those text generation
    never emits). One ((n_i,) float32, (n_i,) bool) pair of CPU tensors per prompt; the same two passes."""
    scores, greedy, counts = _score_flat(model, prompts, continuations, normalize, suppress=suppress)
    return list(zip(scores.split(counts), greedy.split(counts), strict=True)) if counts else []


def _score_flat(model, prompts: list, continuations: list[list[list[int]]], normalize: bool,
                suppress: list[int] | None) -> tuple[torch.Tensor, torch.Tensor | None, list[int]]:
    """Scores (n,) of all continuations in order, their greedy flags (n,) (None without ``suppress``) and the
    number of continuations of each prompt."""
    model._require_tokenizer()
    if len(prompts) != len(continuations):
        raise ValueError(f"{len(prompts)} prompts but {len(continuations)} lists of continuations")
    if not prompts:
        return torch.zeros(0), torch.zeros(0, dtype=torch.bool), []
    for conts in continuations:
        if not conts:
            raise ValueError("a prompt has no continuations to score")
        if any(not cont for cont in conts):
            raise ValueError("a continuation has no token ids")
    llm = model.llm
    embeds, mask, positions = _prompt_batch(model, prompts, side="right")
    last = mask.sum(-1) - 1  # (b,) each prompt's last real column
    keep = torch.unique(last)  # (k,) sorted: the columns whose logits are needed
    out = llm(inputs_embeds=embeds, position_ids=positions, use_cache=True, **_logits_at(llm, keep))
    logits = out.logits if out.logits.shape[1] == len(keep) else out.logits[:, keep]  # (b, k, V)
    where = torch.searchsorted(keep, last)  # (b,) each row's column among ``keep``
    first = logits[torch.arange(len(prompts), device=logits.device), where.to(logits.device)]
    first = first.float().log_softmax(-1)  # (b, V) next-token log-probs after each prompt
    counts = torch.tensor([len(conts) for conts in continuations])
    rows = torch.repeat_interleave(torch.arange(len(prompts)), counts)  # (n,) the prompt of each continuation
    cache = _cache_of(out)
    cache.batch_select_indices(rows)  # (b, ...) -> (n, ...) per layer (a CPU index serves any layer's device)
    flat = [cont for conts in continuations for cont in conts]
    lengths = torch.tensor([len(cont) for cont in flat])  # (n,)
    m = int(lengths.max())
    cont_ids = torch.full((len(flat), m), model.token_ids.pad, dtype=torch.long)  # (n, m) right-padded
    for i, cont in enumerate(flat):
        cont_ids[i, : len(cont)] = torch.tensor(cont)
    cont_mask = (torch.arange(m)[None] < lengths[:, None]).long()  # (n, m)
    device = model.device
    row_ids = rows.to(device)
    attention = torch.cat([mask[row_ids], cont_mask.to(device)], dim=1)  # (n, s + m)
    cont_positions = mask.sum(-1)[row_ids][:, None] + torch.arange(m, device=device)  # (n, m) after each prefix
    step = llm(input_ids=cont_ids.to(device), attention_mask=attention, position_ids=cont_positions,
               use_cache=True, **_cache_kwargs(llm, cache))
    logp = step.logits[:, :-1].float().log_softmax(-1)  # (n, m-1, V) on the LM head's device
    targets = cont_ids[:, 1:].to(logp.device)
    rest = logp.gather(-1, targets[..., None])[..., 0]  # (n, m-1)
    valid = (torch.arange(m - 1)[None] < (lengths - 1)[:, None]).to(logp.device)
    rest = torch.where(valid, rest, 0.0).sum(-1).to(first.device)  # (n,)
    head = first[rows.to(first.device), cont_ids[:, 0].to(first.device)]  # (n,) the first token after the prompt
    scores = (head + rest).cpu()
    if normalize:
        scores = scores / lengths
    greedy = None
    if suppress is not None:
        banned = torch.tensor(sorted(set(suppress)), dtype=torch.long)
        head_pick = first.index_fill(-1, banned.to(first.device), float("-inf")).argmax(-1)  # (b,)
        rest_pick = logp.index_fill(-1, banned.to(logp.device), float("-inf")).argmax(-1)  # (n, m-1)
        head_greedy = head_pick.cpu()[rows] == cont_ids[:, 0]  # (n,)
        rest_greedy = ((rest_pick == targets) | ~valid).all(-1).cpu()  # (n,) padding counts as greedy
        greedy = head_greedy & rest_greedy
    return scores, greedy, counts.tolist()


@torch.no_grad()
def score_continuation_ids_reference(model, prompt, continuations: list[list[int]],
                                     normalize: bool = False) -> torch.Tensor:
    """The per-continuation path (the batched scoring's reference): the prompt runs once, then each continuation
    runs alone over a copy of its KV cache. (n,) float32."""
    if any(not cont for cont in continuations):
        raise ValueError("a continuation has no token ids")
    _, _, embeds = model._prompt_embeds(prompt)
    out = model.llm(inputs_embeds=embeds, use_cache=True)
    cache = _cache_of(out)
    first = out.logits[0, -1].float().log_softmax(-1)  # (V,)
    scores = []
    for cont in continuations:
        cont_ids = torch.tensor([cont], device=model.device)
        total = embeds.shape[1] + len(cont)
        step = model.llm(input_ids=cont_ids, use_cache=True, **_cache_kwargs(model.llm, copy.deepcopy(cache)),
                         attention_mask=torch.ones(1, total, dtype=torch.long, device=model.device))
        logp = step.logits[0, :-1].float().log_softmax(-1)  # (m-1, V)
        rest = logp.gather(-1, cont_ids[0, 1:, None].to(logp.device)).sum()  # the LM head's device
        score = first[cont[0]] + rest.to(first.device)
        scores.append(score / len(cont) if normalize else score)
    return torch.stack(scores).cpu()
