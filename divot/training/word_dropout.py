"""Word dropout on the text the LLM learns to write (Bowman et al. 2016, "Generating sentences from a continuous
space"): a fraction of the labelled text tokens is replaced *in the input* by the unknown token while the labels
stay, so predicting the next word cannot lean on the words before it alone and has to read the video.

Only positions that carry a label and hold ordinary text are touched: ``</s>``, ``<vid>``, ``</vid>``, the frame
tokens and every prompt token are kept. The draw comes from its own generator, seeded per micro-batch, so a
resumed run drops the same words.
"""

from __future__ import annotations

import torch

from divot.constants import IGNORE_INDEX


def drop_target_words(input_ids: torch.Tensor, labels: torch.Tensor, rate: float, unk_id: int,
                      keep_ids: list[int], seed: int) -> torch.Tensor:
    """``input_ids`` (b, s) with each labelled text token (``labels != IGNORE_INDEX``, id not in ``keep_ids``)
    replaced by ``unk_id`` with probability ``rate``; a new tensor (the input is left as it was)."""
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"word dropout rate must be in [0, 1), got {rate}")
    if input_ids.shape != labels.shape:
        raise ValueError(f"input_ids {tuple(input_ids.shape)} and labels {tuple(labels.shape)} differ in shape")
    if rate == 0.0:
        return input_ids
    text = (labels != IGNORE_INDEX) & ~torch.isin(input_ids, torch.tensor(keep_ids, device=input_ids.device))
    draw = torch.rand(input_ids.shape, generator=torch.Generator().manual_seed(seed)).to(input_ids.device)
    return torch.where(text & (draw < rate), torch.full_like(input_ids, unk_id), input_ids)
