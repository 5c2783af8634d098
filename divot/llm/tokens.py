"""Divot's added tokens: adding them to a HF tokenizer, initialising their embeddings, the clip layout.

A clip is ``<frame>`` + ``<frame_00000>`` .. ``<frame_{q-1}>`` + ``</frame>``; a video is ``<vid>`` + clips +
``</vid>``; an image is ``<img>`` + one clip + ``</img>`` (DESIGN section 6).
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass

import torch

from divot.constants import (
    FRAME_END,
    FRAME_START,
    IMG_END,
    IMG_START,
    NUM_FRAME_TOKENS,
    SPECIAL_TOKENS,
    VID_END,
    VID_START,
    frame_token,
)

logger = logging.getLogger(__name__)

INPUT_INIT_SCALE = 1.0  # new input-embedding rows = mean of the old rows
OUTPUT_INIT_SCALE = 3.0  # new lm_head rows = 3 x mean of the old rows


def add_special_tokens(tokenizer) -> int:
    """Add the Divot tokens missing from ``tokenizer`` (as special tokens); returns how many were added.

    A tokenizer without a pad token gets its unk token (or eos) as pad: right padding is always masked.
    """
    vocab = tokenizer.get_vocab()
    missing = [t for t in SPECIAL_TOKENS if t not in vocab]
    added = tokenizer.add_special_tokens({"extra_special_tokens": missing},
                                         replace_extra_special_tokens=False) if missing else 0
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.unk_token if tokenizer.unk_token is not None else tokenizer.eos_token
    return added


def check_special_tokens(tokenizer, where: str = "tokenizer") -> None:
    """Raise a ``ValueError`` naming the Divot tokens the tokenizer lacks."""
    vocab = tokenizer.get_vocab()
    missing = [t for t in SPECIAL_TOKENS if t not in vocab]
    if missing:
        raise ValueError(f"{where} lacks {len(missing)} of the {len(SPECIAL_TOKENS)} Divot tokens "
                         f"(e.g. {missing[:5]}); add them with divot.llm.add_special_tokens")


def embedding_shape(weight: torch.Tensor) -> tuple[int, ...]:
    """The full shape of an embedding weight, also when DeepSpeed ZeRO-3 has partitioned it (``ds_shape``)."""
    return tuple(getattr(weight, "ds_shape", weight.shape))


def _gathered(params: list, modifier_rank: int | None = None):
    """ZeRO-3 partitioned parameters: whole inside the block (what rank ``modifier_rank`` writes is kept and
    re-partitioned); other parameters: nothing to do."""
    params = [p for p in params if p is not None and hasattr(p, "ds_id")]
    if not params:
        return contextlib.nullcontext()
    import deepspeed

    return deepspeed.zero.GatheredParameters(params, modifier_rank=modifier_rank)


def resize_embeddings(llm, num_tokens: int) -> int:
    """Grow the LLM's vocabulary to ``num_tokens`` rows; new rows get the Divot initialisation.

    Input rows = mean of the old input rows; lm_head rows = 3 x mean of the old lm_head rows (with tied
    embeddings only the input rule applies). Returns the number of rows added (0 if already large enough).
    Under DeepSpeed ZeRO-3 (partitioned parameters; ``transformers`` resizes them while its
    ``HfDeepSpeedConfig`` is alive) the rows are gathered, written on rank 0 and partitioned again.
    """
    emb = llm.get_input_embeddings()
    old = embedding_shape(emb.weight)[0]
    if num_tokens <= old:
        return 0
    out = llm.get_output_embeddings()
    with torch.no_grad():
        with _gathered([emb.weight, out.weight if out is not None else None]):
            in_mean = emb.weight.float().mean(0)
            out_mean = out.weight.float().mean(0) if out is not None else None
        llm.resize_token_embeddings(num_tokens, mean_resizing=False)
        new_in = llm.get_input_embeddings().weight
        new_out = llm.get_output_embeddings()
        tied = new_out is not None and new_out.weight is new_in
        untied_out = [new_out.weight, getattr(new_out, "bias", None)] if new_out is not None and not tied else []
        with _gathered([new_in, *untied_out], modifier_rank=0):
            new_in[old:] = (INPUT_INIT_SCALE * in_mean).to(new_in.dtype)
            if untied_out:
                new_out.weight[old:] = (OUTPUT_INIT_SCALE * out_mean).to(new_out.weight.dtype)
                if getattr(new_out, "bias", None) is not None:
                    new_out.bias[old:] = 0
        if tied:
            logger.warning("tied input/output embeddings: new rows use the input rule (mean) only")
    logger.info("resized the LLM vocabulary %d -> %d", old, num_tokens)
    return num_tokens - old


@dataclass(frozen=True)
class DivotTokenIds:
    """Ids of the Divot tokens (and bos / eos / pad) in one tokenizer."""

    bos: int
    eos: int
    pad: int
    img_start: int
    img_end: int
    vid_start: int
    vid_end: int
    frame_start: int
    frame_end: int
    frames: tuple[int, ...]  # <frame_00000> .. <frame_00255>

    @classmethod
    def from_tokenizer(cls, tokenizer) -> DivotTokenIds:
        check_special_tokens(tokenizer)
        ids = tokenizer.convert_tokens_to_ids
        if tokenizer.bos_token_id is None or tokenizer.eos_token_id is None:
            raise ValueError("the tokenizer needs bos and eos tokens")
        pad = tokenizer.pad_token_id
        if pad is None:
            pad = tokenizer.unk_token_id if tokenizer.unk_token_id is not None else tokenizer.eos_token_id
        return cls(bos=tokenizer.bos_token_id, eos=tokenizer.eos_token_id, pad=pad,
                   img_start=ids(IMG_START), img_end=ids(IMG_END), vid_start=ids(VID_START), vid_end=ids(VID_END),
                   frame_start=ids(FRAME_START), frame_end=ids(FRAME_END),
                   frames=tuple(ids(frame_token(i)) for i in range(NUM_FRAME_TOKENS)))

    def clip(self, num_queries: int) -> list[int]:
        """``<frame>`` + q frame tokens + ``</frame>`` (q + 2 ids)."""
        if not 1 <= num_queries <= len(self.frames):
            raise ValueError(f"num_queries must be in 1..{len(self.frames)}, got {num_queries}")
        return [self.frame_start, *self.frames[:num_queries], self.frame_end]

    def placeholders(self) -> list[int]:
        """Every id that must never be produced as text: frame markers, frame tokens, image markers."""
        return [self.img_start, self.img_end, self.frame_start, self.frame_end, *self.frames]


def clip_text(num_queries: int) -> str:
    """The text of one clip: ``<frame><frame_00000>...<frame_{q-1}></frame>``."""
    return FRAME_START + "".join(frame_token(i) for i in range(num_queries)) + FRAME_END


def video_text(num_clips: int, num_queries: int) -> str:
    """``<vid>`` + clips + ``</vid>``."""
    return VID_START + clip_text(num_queries) * num_clips + VID_END


def image_text(num_queries: int) -> str:
    """``<img>`` + one clip + ``</img>``."""
    return IMG_START + clip_text(num_queries) + IMG_END


def save_text_tokenizer(tokenizer, directory) -> None:
    """``tokenizer.save_pretrained(directory)``, keeping its sentencepiece ``legacy`` mode.

    transformers (5.x) reads ``legacy`` from ``tokenizer_config.json`` but does not write it back, so a legacy
    Mistral tokenizer saved and reloaded would silently encode text after a special token without its ``▁``
    (a different token sequence from the one the model was trained on). The flag is written back here."""
    import json
    from pathlib import Path

    from divot.hub import atomic_write_text

    tokenizer.save_pretrained(str(directory))
    legacy = getattr(tokenizer, "legacy", None)
    path = Path(directory) / "tokenizer_config.json"
    if legacy is None or not path.is_file():
        return
    config = json.loads(path.read_text())
    if config.get("legacy") != legacy:
        config["legacy"] = bool(legacy)
        atomic_write_text(path, json.dumps(config, indent=2, ensure_ascii=False) + "\n")
