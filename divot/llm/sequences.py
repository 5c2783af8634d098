"""The Divot-LLM sequence formats (DESIGN section 6) and the collator that batches them.

``SequenceBuilder`` turns plain inputs (text fields and clip tokens (clips, q, d)) into an ``LLMSample``:
token ids, labels (``IGNORE_INDEX`` wherever the table gives no loss), which frame-token positions are
comprehension inputs (their embeddings are replaced by the projected clip tokens) or generation queries (their
last hidden states predict the clip tokens through the GMM head), and the clip tokens of each kind.

| format                    | sequence                                                              | labels             |
|---------------------------|-----------------------------------------------------------------------|--------------------|
| ``caption``               | <s> <vid> clips </vid> caption </s>                                   | caption, </s>      |
| ``generation``            | <s> caption <vid> clip </vid> </s>                                    | </s> (+ GMM)       |
| ``qa``                    | <s>[INST] <vid> clips </vid> question [/INST]\\n answer ... </s>      | answers, </s>      |
| ``generation_instruction``| <s>[INST] {template} caption [/INST]\\n <vid> clip </vid> </s>        | <vid>, </vid>, </s>|
| ``story``                 | <s>[INST] instruction [/INST]\\n text1 <vid> clip1 </vid> ... </s>    | texts, <vid>, </vid>, </s> |

A clip is ``<frame>`` + q frame tokens + ``</frame>``; those q + 2 positions never carry a label. Text pieces are
tokenized separately (no special tokens added) and the Divot tokens inserted by id, so labels line up exactly.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import torch

from divot.constants import IGNORE_INDEX
from divot.llm.masks import build_attention_mask_4d
from divot.llm.tokens import DivotTokenIds

GENERATION_TEMPLATES = ("Generate a video of", "Show me a video of", "Please create a video of")
INST_START, INST_END = "[INST]", " [/INST]\n"  # Mistral-Instruct


@dataclass
class LLMSample:
    """One sequence. s = length, q = queries per clip, d = token width."""

    input_ids: torch.Tensor  # (s,) int64
    labels: torch.Tensor  # (s,) int64, IGNORE_INDEX = no loss
    cmp_mask: torch.Tensor  # (s,) bool: positions replaced by projected clip tokens, in clip order
    gen_mask: torch.Tensor  # (s,) bool: query positions of generated clips, in clip order
    cmp_clips: torch.Tensor  # (n_cmp, q, d) float32
    gen_clips: torch.Tensor  # (n_gen, q, d) float32 GMM targets (zeros at inference)

    def __len__(self) -> int:
        return self.input_ids.shape[0]


@dataclass
class _Parts:
    ids: list[int] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    cmp: list[bool] = field(default_factory=list)
    gen: list[bool] = field(default_factory=list)
    cmp_clips: list[torch.Tensor] = field(default_factory=list)
    gen_clips: list[torch.Tensor] = field(default_factory=list)

    def add(self, ids: list[int], label: bool, cmp: bool = False, gen: bool = False) -> None:
        self.ids += ids
        self.labels += ids if label else [IGNORE_INDEX] * len(ids)
        self.cmp += [cmp] * len(ids)
        self.gen += [gen] * len(ids)


class SequenceBuilder:
    """Builds ``LLMSample``s for one tokenizer and clip size (q queries of d values)."""

    def __init__(self, tokenizer, num_queries: int, token_dim: int, max_length: int | None = None):
        self.tokenizer = tokenizer
        self.ids = DivotTokenIds.from_tokenizer(tokenizer)
        self.num_queries, self.token_dim, self.max_length = num_queries, token_dim, max_length
        self._clip_ids = self.ids.clip(num_queries)

    @classmethod
    def from_config(cls, tokenizer, config, max_length: int | None = None) -> SequenceBuilder:
        return cls(tokenizer, config.num_queries, config.token_dim, max_length)

    # -- pieces -------------------------------------------------------------------------------------------
    def encode(self, text: str) -> list[int]:
        """Text -> ids, no special tokens added."""
        return list(self.tokenizer(text, add_special_tokens=False).input_ids) if text else []

    def _clips(self, clips: torch.Tensor | None, what: str) -> torch.Tensor:
        if clips is None:
            return torch.zeros(0, self.num_queries, self.token_dim)
        if clips.ndim == 2:
            clips = clips[None]
        if clips.ndim != 3 or tuple(clips.shape[1:]) != (self.num_queries, self.token_dim):
            raise ValueError(f"{what}: clip tokens must be (clips, {self.num_queries}, {self.token_dim}), "
                             f"got {tuple(clips.shape)}")
        return clips.detach().float().cpu()

    def _video(self, parts: _Parts, clips: torch.Tensor, role: str, label_markers: bool) -> None:
        """``<vid>`` + one clip per row + ``</vid>``; role "cmp" (replaced) or "gen" (queries)."""
        q = self.num_queries
        parts.add([self.ids.vid_start], label_markers)
        for clip in clips:
            parts.add([self._clip_ids[0]], False)
            parts.add(self._clip_ids[1 : q + 1], False, cmp=role == "cmp", gen=role == "gen")
            parts.add([self._clip_ids[-1]], False)
            (parts.cmp_clips if role == "cmp" else parts.gen_clips).append(clip)
        parts.add([self.ids.vid_end], label_markers)

    def _finish(self, parts: _Parts) -> LLMSample:
        n = len(parts.ids)
        if self.max_length is not None and n > self.max_length:
            raise ValueError(f"sequence of {n} tokens exceeds max_length {self.max_length}")
        empty = torch.zeros(0, self.num_queries, self.token_dim)
        return LLMSample(
            input_ids=torch.tensor(parts.ids, dtype=torch.long),
            labels=torch.tensor(parts.labels, dtype=torch.long),
            cmp_mask=torch.tensor(parts.cmp, dtype=torch.bool),
            gen_mask=torch.tensor(parts.gen, dtype=torch.bool),
            cmp_clips=torch.stack(parts.cmp_clips) if parts.cmp_clips else empty,
            gen_clips=torch.stack(parts.gen_clips) if parts.gen_clips else empty,
        )

    # -- training formats ---------------------------------------------------------------------------------
    def caption(self, clips: torch.Tensor, caption: str) -> LLMSample:
        """Caption pretraining: ``<s> <vid> clips </vid> caption </s>``; labels caption + ``</s>``."""
        p = _Parts()
        p.add([self.ids.bos], False)
        self._video(p, self._clips(clips, "caption"), "cmp", False)
        p.add(self.encode(caption), True)
        p.add([self.ids.eos], True)
        return self._finish(p)

    def generation(self, caption: str, clips: torch.Tensor) -> LLMSample:
        """Generation pretraining: ``<s> caption <vid> clip </vid> </s>``; label ``</s>``, GMM on the clip."""
        p = _Parts()
        p.add([self.ids.bos], False)
        p.add(self.encode(caption), False)
        self._video(p, self._clips(clips, "generation"), "gen", False)
        p.add([self.ids.eos], True)
        return self._finish(p)

    def qa(self, clips: torch.Tensor | None, turns: list[tuple[str, str]]) -> LLMSample:
        """QA instruction tuning (multi-turn): ``<s>[INST] <vid> clips </vid> q1 [/INST]\\n a1 [INST] q2
        [/INST]\\n a2 ... </s>``; labels the answers and the final ``</s>``. The video opens the first turn."""
        if not turns:
            raise ValueError("qa: expected at least one (question, answer) turn, got none")
        p = _Parts()
        p.add([self.ids.bos], False)
        for i, (question, answer) in enumerate(turns):
            p.add(self.encode(INST_START), False)
            if i == 0 and clips is not None:
                self._video(p, self._clips(clips, "qa"), "cmp", False)
            p.add(self.encode(f" {question}{INST_END}"), False)
            p.add(self.encode(answer), True)
        p.add([self.ids.eos], True)
        return self._finish(p)

    def generation_instruction(self, caption: str, clips: torch.Tensor, template: str | None = None,
                               rng: random.Random | None = None) -> LLMSample:
        """Generation instruction tuning: ``<s>[INST] {template} caption [/INST]\\n <vid> clip </vid> </s>``;
        labels ``<vid>``, ``</vid>``, ``</s>``; GMM on the clip. ``template`` defaults to a random one of
        ``GENERATION_TEMPLATES`` drawn from ``rng``."""
        template = template if template is not None else (rng or random).choice(GENERATION_TEMPLATES)
        p = _Parts()
        p.add([self.ids.bos], False)
        p.add(self.encode(f"{INST_START} {template} {caption}{INST_END}"), False)
        self._video(p, self._clips(clips, "generation_instruction"), "gen", True)
        p.add([self.ids.eos], True)
        return self._finish(p)

    def story(self, instruction: str, texts: list[str], clips: torch.Tensor) -> LLMSample:
        """Story: ``<s>[INST] instruction [/INST]\\n text1 <vid> clip1 </vid> text2 <vid> clip2 </vid> ...
        </s>``; labels the texts, ``<vid>``, ``</vid>`` and ``</s>``; GMM on every clip."""
        clips = self._clips(clips, "story")
        if len(texts) != clips.shape[0]:
            raise ValueError(f"story: expected one clip per text, got {len(texts)} texts and {clips.shape[0]} clips")
        p = _Parts()
        p.add([self.ids.bos], False)
        p.add(self.encode(f"{INST_START} {instruction}{INST_END}"), False)
        for text, clip in zip(texts, clips, strict=True):
            p.add(self.encode(text), True)
            self._video(p, clip[None], "gen", True)
        p.add([self.ids.eos], True)
        return self._finish(p)

    # -- inference prompts (no labels, no eos) ------------------------------------------------------------
    def qa_prompt(self, clips: torch.Tensor | None, question: str) -> LLMSample:
        """``<s>[INST] <vid> clips </vid> question [/INST]\\n``: the model continues with the answer."""
        p = _Parts()
        p.add([self.ids.bos], False)
        p.add(self.encode(INST_START), False)
        if clips is not None:
            self._video(p, self._clips(clips, "qa_prompt"), "cmp", False)
        p.add(self.encode(f" {question}{INST_END}"), False)
        return self._finish(p)

    def story_prompt(self, instruction: str) -> LLMSample:
        """``<s>[INST] instruction [/INST]\\n``: the model continues with text1 ``<vid>`` ... (the story row)."""
        p = _Parts()
        p.add([self.ids.bos], False)
        p.add(self.encode(f"{INST_START} {instruction}{INST_END}"), False)
        return self._finish(p)

    def caption_prompt(self, clips: torch.Tensor) -> LLMSample:
        """``<s> <vid> clips </vid>``: the model continues with a caption (the pretraining format)."""
        p = _Parts()
        p.add([self.ids.bos], False)
        self._video(p, self._clips(clips, "caption_prompt"), "cmp", False)
        return self._finish(p)

    def generation_prompt(self, caption: str, template: str | None = GENERATION_TEMPLATES[0],
                          instruct: bool = True) -> LLMSample:
        """``<s>[INST] {template} caption [/INST]\\n`` (or ``<s> caption`` with ``instruct=False``, the
        pretraining format); the model continues with ``<vid>`` and the clip."""
        p = _Parts()
        p.add([self.ids.bos], False)
        text = f"{INST_START} {template + ' ' if template else ''}{caption}{INST_END}" if instruct else caption
        p.add(self.encode(text), False)
        return self._finish(p)


class LLMCollator:
    """Right-pads ``LLMSample``s and builds every mask. The batch (b samples, s = longest, q, d):

    ``input_ids`` (b, s) int64 (pad id), ``labels`` (b, s) int64 (IGNORE_INDEX), ``attention_mask`` (b, s) int64
    (1 real, 0 pad), ``attention_mask_4d`` (b, 1, s, s) float32 additive (causal, bidirectional query blocks,
    padding blocked), ``cmp_mask`` / ``gen_mask`` (b, s) bool, ``cmp_clips`` (n_cmp, q, d) and ``gen_clips``
    (n_gen, q, d) float32 (all samples' clips in order), ``num_cmp_clips`` / ``num_gen_clips`` (b,) int64.
    """

    def __init__(self, pad_token_id: int, num_queries: int, pad_to_multiple_of: int | None = None):
        self.pad_token_id, self.num_queries, self.pad_to_multiple_of = pad_token_id, num_queries, pad_to_multiple_of

    def __call__(self, samples: list[LLMSample]) -> dict[str, torch.Tensor]:
        if not samples:
            raise ValueError("cannot collate an empty list of samples")
        shapes = {tuple(t.shape[1:]) for s in samples for t in (s.cmp_clips, s.gen_clips)}
        if len(shapes) != 1 or next(iter(shapes))[0] != self.num_queries:
            raise ValueError(f"all clips must be (q={self.num_queries}, d), got shapes {sorted(shapes)}")
        b, s = len(samples), max(len(x) for x in samples)
        if self.pad_to_multiple_of:
            s = -(-s // self.pad_to_multiple_of) * self.pad_to_multiple_of
        input_ids = torch.full((b, s), self.pad_token_id, dtype=torch.long)
        labels = torch.full((b, s), IGNORE_INDEX, dtype=torch.long)
        attention_mask = torch.zeros(b, s, dtype=torch.long)
        cmp_mask = torch.zeros(b, s, dtype=torch.bool)
        gen_mask = torch.zeros(b, s, dtype=torch.bool)
        for i, x in enumerate(samples):
            n = len(x)
            input_ids[i, :n], labels[i, :n], attention_mask[i, :n] = x.input_ids, x.labels, 1
            cmp_mask[i, :n], gen_mask[i, :n] = x.cmp_mask, x.gen_mask
        return {
            "input_ids": input_ids,
            "labels": labels,
            "attention_mask": attention_mask,
            "attention_mask_4d": build_attention_mask_4d(attention_mask, gen_mask, self.num_queries),
            "cmp_mask": cmp_mask,
            "gen_mask": gen_mask,
            "cmp_clips": torch.cat([x.cmp_clips for x in samples]),
            "gen_clips": torch.cat([x.gen_clips for x in samples]),
            "num_cmp_clips": torch.tensor([x.cmp_clips.shape[0] for x in samples]),
            "num_gen_clips": torch.tensor([x.gen_clips.shape[0] for x in samples]),
        }
