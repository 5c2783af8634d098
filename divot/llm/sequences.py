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

A clip is ``<frame>`` + q frame tokens + ``</frame>``; those q + 2 positions never carry a label.

How the text is split into tokenizer calls matters: sentencepiece gives a ``▁`` piece before a special token that
follows a space, and (``legacy=False``) no ``▁`` to a word that follows a special token. Two encodings exist:

- ``"reference"`` (the default; the released weights): every piece of text is built as the reference builds it
  and encoded in one call, V(n) = ``<vid>`` + clips + ``</vid>`` with no spaces (``enc(s)`` = ``tokenizer(s,
  add_special_tokens=False)``):

  - caption: ``[bos] + enc(V(n)) + enc(caption) + [eos]``
  - generation: ``[bos] + enc(caption) + enc(V(1)) + [eos]``
  - qa: ``[bos] + enc("[INST] " + V(n) + q1 + " [/INST]\\n") + enc(a1)``, each later turn ``+ enc("\\n[INST] "
    + q + " [/INST]\\n") + enc(a)``, then ``+ [eos]``; the prompt is the first turn without its answer
  - generation instruction: ``[bos] + enc("[INST] " + template + " " + caption + " [/INST]\\n") + enc(V(1)) +
    [eos]``
  - story (the reference's story fine-tuning was not released; it follows the generation instruction):
    ``[bos] + enc("[INST] " + instruction + " [/INST]\\n")`` + ``enc(text_i) + enc(V(1))`` per segment + ``[eos]``
- ``"pieces"``: ``[INST]``, each video and ``" question [/INST]\\n"`` encoded separately, later turns without
  the ``"\\n"``. Models this toolkit trained before the reference encoding (the bundled ``shapes-tiny``) were
  trained on it; a saved Divot-LLM config without ``sequence_format`` loads with it.

User text (questions, captions, answers, instructions, templates) must not contain Divot tokens such as
``<vid>`` or ``<frame_00003>``: the tokenizer would read them as tokens, so they are rejected with a clear error.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field

import torch

from divot.constants import IGNORE_INDEX
from divot.llm.masks import build_attention_mask_4d
from divot.llm.tokens import DivotTokenIds, video_text

GENERATION_TEMPLATES = ("Generate a video of", "Show me a video of", "Please create a video of")
INST_START, INST_END = "[INST]", " [/INST]\n"  # Mistral-Instruct
SEQUENCE_FORMATS = ("reference", "pieces")
# The QA prompt of each encoding, as summaries record it (enc = one tokenizer call, V(n) = the video block).
QA_PROMPT_ENCODINGS = {
    "reference": '[bos] + enc("[INST] " + V(n) + question + " [/INST]\\n")',
    "pieces": '[bos] + enc("[INST]") + V(n) + enc(" " + question + " [/INST]\\n")',
}
DIVOT_TOKEN_PATTERN = re.compile(r"</?(?:img|vid|frame)>|<frame_\d{5}>")


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
class _Text:
    """Text encoded in one call; ``label``: its ids are targets."""

    text: str
    label: bool = False


@dataclass
class _Video:
    """``before + V(n) + after`` encoded in one call (``before`` / ``after`` are prompt text, never labelled).
    ``role``: "cmp" (clip tokens replace the frame tokens) or "gen" (frame tokens are GMM queries);
    ``label_markers``: ``<vid>`` and ``</vid>`` are targets."""

    clips: torch.Tensor
    role: str
    before: str = ""
    after: str = ""
    label_markers: bool = False


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
    """Builds ``LLMSample``s for one tokenizer and clip size (q queries of d values).

    ``sequence_format``: "reference" (the released weights' encoding, the default) or "pieces" (see the module
    docstring); ``from_config`` takes it from the Divot-LLM config."""

    def __init__(self, tokenizer, num_queries: int, token_dim: int, max_length: int | None = None,
                 sequence_format: str = "reference"):
        if sequence_format not in SEQUENCE_FORMATS:
            raise ValueError(f"unknown sequence_format {sequence_format!r}; choose from {list(SEQUENCE_FORMATS)}")
        self.tokenizer = tokenizer
        self.ids = DivotTokenIds.from_tokenizer(tokenizer)
        self.num_queries, self.token_dim, self.max_length = num_queries, token_dim, max_length
        self.sequence_format = sequence_format
        self._clip_ids = self.ids.clip(num_queries)

    @classmethod
    def from_config(cls, tokenizer, config, max_length: int | None = None) -> SequenceBuilder:
        return cls(tokenizer, config.num_queries, config.token_dim, max_length,
                   getattr(config, "sequence_format", "reference"))

    @property
    def reference(self) -> bool:
        return self.sequence_format == "reference"

    # -- pieces -------------------------------------------------------------------------------------------
    def encode(self, text: str) -> list[int]:
        """Text -> ids, no special tokens added (one tokenizer call)."""
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

    @staticmethod
    def _plain(what: str, text: str) -> str:
        """``text`` unchanged; a ``ValueError`` if it is not a string or holds a Divot token."""
        if not isinstance(text, str):
            raise TypeError(f"{what} must be a string, got {type(text).__name__}")
        found = DIVOT_TOKEN_PATTERN.search(text)
        if found:
            raise ValueError(f"{what} contains {found.group()!r}, a Divot token: it would be read as a token, "
                             f"not as text; remove it")
        return text

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

    def _add_video(self, parts: _Parts, seg: _Video) -> None:
        """Encode ``before + V(n) + after`` in one call and mark the clip positions (checked, not assumed)."""
        n = seg.clips.shape[0]
        ids = self.encode(seg.before + video_text(n, self.num_queries) + seg.after)
        block = [self.ids.vid_start, *self._clip_ids * n, self.ids.vid_end]
        start = ids.index(self.ids.vid_start) if self.ids.vid_start in ids else -1
        if start < 0 or ids[start : start + len(block)] != block or ids.count(self.ids.vid_start) != 1:
            raise ValueError(f"the tokenizer does not keep the video block intact in {seg.before!r} + <vid> ... "
                             f"</vid> + {seg.after!r}: are the Divot tokens added to it as special tokens?")
        parts.add(ids[:start], False)
        self._video(parts, seg.clips, seg.role, seg.label_markers)
        parts.add(ids[start + len(block):], False)

    def _build(self, segments: list, eos: bool) -> LLMSample:
        parts = _Parts()
        parts.add([self.ids.bos], False)
        for seg in segments:
            if isinstance(seg, _Video):
                if self.reference:
                    self._add_video(parts, seg)
                else:
                    parts.add(self.encode(seg.before), False)
                    self._video(parts, seg.clips, seg.role, seg.label_markers)
                    parts.add(self.encode(seg.after), False)
            else:
                parts.add(self.encode(seg.text), seg.label)
        if eos:
            parts.add([self.ids.eos], True)
        return self._finish(parts)

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

    # -- the instruction texts of each encoding ---------------------------------------------------------------
    def _instruction(self, text: str) -> str:
        """``[INST] text [/INST]\\n`` (one text, e.g. a generation or story instruction)."""
        return f"{INST_START} {text}{INST_END}"

    def _qa_turns(self, clips: torch.Tensor | None, turns: list[tuple[str, str]], what: str) -> list:
        """The segments of QA turns; the video opens the first turn. An answer of "" adds nothing."""
        segments: list = []
        for i, (question, answer) in enumerate(turns):
            question = self._plain(f"{what}: question {i + 1}", question)
            answer = self._plain(f"{what}: answer {i + 1}", answer)
            video = i == 0 and clips is not None
            if self.reference:
                head = f"{INST_START} " if i == 0 else f"\n{INST_START} "
                if video:
                    segments.append(_Video(self._clips(clips, what), "cmp", before=head, after=question + INST_END))
                else:
                    segments.append(_Text(head + question + INST_END))
            else:
                segments.append(_Text(INST_START))
                if video:
                    segments.append(_Video(self._clips(clips, what), "cmp"))
                segments.append(_Text(f" {question}{INST_END}"))
            segments.append(_Text(answer, label=True))
        return segments

    # -- training formats ---------------------------------------------------------------------------------
    def caption(self, clips: torch.Tensor, caption: str) -> LLMSample:
        """Caption pretraining: ``<s> <vid> clips </vid> caption </s>``; labels caption + ``</s>``."""
        return self._build([_Video(self._clips(clips, "caption"), "cmp"),
                            _Text(self._plain("caption", caption), label=True)], eos=True)

    def generation(self, caption: str, clips: torch.Tensor) -> LLMSample:
        """Generation pretraining: ``<s> caption <vid> clip </vid> </s>``; label ``</s>``, GMM on the clip."""
        return self._build([_Text(self._plain("caption", caption)),
                            _Video(self._clips(clips, "generation"), "gen")], eos=True)

    def qa(self, clips: torch.Tensor | None, turns: list[tuple[str, str]]) -> LLMSample:
        """QA instruction tuning (multi-turn): ``<s>[INST] <vid> clips </vid> q1 [/INST]\\n a1 \\n[INST] q2
        [/INST]\\n a2 ... </s>``; labels the answers and the final ``</s>``. The video opens the first turn."""
        if not turns:
            raise ValueError("qa: expected at least one (question, answer) turn, got none")
        return self._build(self._qa_turns(clips, list(turns), "qa"), eos=True)

    def generation_instruction(self, caption: str, clips: torch.Tensor, template: str | None = None,
                               rng: random.Random | None = None) -> LLMSample:
        """Generation instruction tuning: ``<s>[INST] {template} caption [/INST]\\n <vid> clip </vid> </s>``;
        labels ``<vid>``, ``</vid>``, ``</s>``; GMM on the clip. ``template`` defaults to a random one of
        ``GENERATION_TEMPLATES`` drawn from ``rng``."""
        template = template if template is not None else (rng or random).choice(GENERATION_TEMPLATES)
        text = f"{self._plain('template', template)} {self._plain('caption', caption)}"
        return self._build([_Text(self._instruction(text)),
                            _Video(self._clips(clips, "generation_instruction"), "gen", label_markers=True)],
                           eos=True)

    def story(self, instruction: str, texts: list[str], clips: torch.Tensor) -> LLMSample:
        """Story: ``<s>[INST] instruction [/INST]\\n text1 <vid> clip1 </vid> text2 <vid> clip2 </vid> ...
        </s>``; labels the texts, ``<vid>``, ``</vid>`` and ``</s>``; GMM on every clip."""
        clips = self._clips(clips, "story")
        if len(texts) != clips.shape[0]:
            raise ValueError(f"story: expected one clip per text, got {len(texts)} texts and {clips.shape[0]} clips")
        segments: list = [_Text(self._instruction(self._plain("story: instruction", instruction)))]
        for i, (text, clip) in enumerate(zip(texts, clips, strict=True)):
            segments += [_Text(self._plain(f"story: text {i + 1}", text), label=True),
                         _Video(clip[None], "gen", label_markers=True)]
        return self._build(segments, eos=True)

    # -- inference prompts (no labels, no eos) ------------------------------------------------------------
    def qa_prompt(self, clips: torch.Tensor | None, question: str) -> LLMSample:
        """``<s>[INST] <vid> clips </vid> question [/INST]\\n``: the model continues with the answer."""
        return self._build(self._qa_turns(clips, [(question, "")], "qa_prompt"), eos=False)

    def story_prompt(self, instruction: str) -> LLMSample:
        """``<s>[INST] instruction [/INST]\\n``: the model continues with text1 ``<vid>`` ... (the story row)."""
        return self._build([_Text(self._instruction(self._plain("story instruction", instruction)))], eos=False)

    def caption_prompt(self, clips: torch.Tensor) -> LLMSample:
        """``<s> <vid> clips </vid>``: the model continues with a caption (the pretraining format)."""
        return self._build([_Video(self._clips(clips, "caption_prompt"), "cmp")], eos=False)

    def generation_prompt(self, caption: str, template: str | None = GENERATION_TEMPLATES[0],
                          instruct: bool = True) -> LLMSample:
        """``<s>[INST] {template} caption [/INST]\\n`` (or ``<s> caption`` with ``instruct=False``, the
        pretraining format); the model continues with ``<vid>`` and the clip."""
        caption = self._plain("caption", caption)
        if not instruct:
            return self._build([_Text(caption)], eos=False)
        text = f"{self._plain('template', template) + ' ' if template else ''}{caption}"
        return self._build([_Text(self._instruction(text))], eos=False)


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


def left_pad_prompts(samples: list[LLMSample], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Left-pads inference prompts for batched decoding (b prompts, s = longest; every row ends with its last real
    token, so the next-token logits of all rows sit in the last column).

    ``input_ids`` (b, s) int64 (pad id on the left), ``attention_mask`` (b, s) int64 (0 on the padding),
    ``position_ids`` (b, s) int64 (0 at each row's first real token, as in an unpadded pass; 0 on the padding),
    ``cmp_mask`` (b, s) bool, ``cmp_clips`` (n_cmp, q, d) float32 (all prompts' clips in order). Prompts with
    generation queries are rejected: their bidirectional blocks need the 4D mask, not a padding mask.
    """
    return pad_prompts(samples, pad_token_id, side="left")


def pad_prompts(samples: list[LLMSample], pad_token_id: int, side: str = "left") -> dict[str, torch.Tensor]:
    """``left_pad_prompts``, or with ``side="right"`` the padding after each row's last real token: then no real
    token ever sees a pad under the causal mask, so a single forward over the batch needs no padding mask (the
    fast causal attention kernels) and each row's next-token logits sit at column ``attention_mask.sum(1) - 1``.
    Positions count 0 .. n - 1 over the real tokens either way (0 on the padding)."""
    if side not in ("left", "right"):
        raise ValueError(f"side must be 'left' or 'right', got {side!r}")
    if not samples:
        raise ValueError("cannot pad an empty list of prompts")
    if any(bool(x.gen_mask.any()) for x in samples):
        raise ValueError("padded prompts must be comprehension prompts; a prompt has generation query positions")
    b, s = len(samples), max(len(x) for x in samples)
    input_ids = torch.full((b, s), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros(b, s, dtype=torch.long)
    position_ids = torch.zeros(b, s, dtype=torch.long)
    cmp_mask = torch.zeros(b, s, dtype=torch.bool)
    for i, x in enumerate(samples):
        n = len(x)
        cols = slice(s - n, s) if side == "left" else slice(0, n)
        input_ids[i, cols], attention_mask[i, cols], cmp_mask[i, cols] = x.input_ids, 1, x.cmp_mask
        position_ids[i, cols] = torch.arange(n)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "position_ids": position_ids,
            "cmp_mask": cmp_mask, "cmp_clips": torch.cat([x.cmp_clips for x in samples])}
