"""Story generation on a ``DivotLLM``: text, a clip, text, a clip ... in the story row of DESIGN section 6.

    <s>[INST] instruction [/INST]\\n text1 <vid> <frame> q queries </frame> </vid> text2 <vid> ... </vid>

Loop, one segment at a time: sample text until the model opens a video (``<vid>``); append ``<frame>``, the q
frame tokens, ``</frame>`` and ``</vid>``; one forward pass over the sequence with the bidirectional query
blocks (``build_attention_mask_4d``) gives both the q query hidden states (-> GMM -> the clip's tokens) and the
KV cache the next segment's text continues from. Earlier clips stay in the context as their query blocks,
exactly as the story format is trained (the targets never enter the input); the sampled tokens go to the
de-tokenizer. Text tokens after a pass use the cache (a new token attends to everything before it, so the
plain causal mask of incremental decoding is the training mask).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from divot.llm.generation import _cache_kwargs
from divot.llm.masks import build_attention_mask_4d

logger = logging.getLogger(__name__)


@dataclass
class GeneratedStory:
    texts: list[str]  # one per segment: the text before its clip
    tokens: torch.Tensor  # (segments, q, d) float32, ready for the de-tokenizer
    input_ids: torch.Tensor  # (s,) the whole sequence, ending with the last </vid>
    forced_video: list[bool]  # per segment: True when <vid> had to be appended (the model did not open one)


def sample_next(logits: torch.Tensor, greedy: bool, temperature: float, top_p: float,
                generator: torch.Generator | None) -> int:
    """One token from (V,) logits: argmax, or temperature + nucleus (top-p) sampling with ``generator``."""
    logits = logits.float()
    if greedy:
        return int(logits.argmax())
    probs = torch.softmax(logits / temperature, dim=-1)
    sorted_probs, order = probs.sort(descending=True)
    keep = sorted_probs.cumsum(-1) - sorted_probs < top_p  # the smallest prefix reaching top_p (>= 1 token)
    sorted_probs = sorted_probs * keep
    pick = torch.multinomial(sorted_probs / sorted_probs.sum(), 1, generator=generator)
    return int(order[pick])


class _Context:
    """The growing sequence and its KV cache."""

    def __init__(self, model, prompt):
        self.model = model
        self.ids = prompt.input_ids.tolist()
        self.gen = [False] * len(self.ids)
        self.cmp = prompt.cmp_mask.tolist()
        self.cmp_clips = prompt.cmp_clips
        self.cache = None

    def full_pass(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Forward the whole sequence with the query-block mask; (hidden (s, h), last logits (V,)); sets the cache."""
        m = self.model
        device = m.device
        input_ids = torch.tensor([self.ids], device=device)
        cmp = torch.tensor([self.cmp], device=device)
        embeds = m.embed(input_ids, cmp, self.cmp_clips.to(device))
        mask = build_attention_mask_4d(torch.ones_like(input_ids), torch.tensor([self.gen], device=device),
                                       m.config.num_queries, dtype=embeds.dtype)
        hidden, self.cache = m.decoder_forward(embeds, mask, use_cache=True)
        return hidden[0], m.lm_logits(hidden[0, -1])

    def step(self, token: int) -> torch.Tensor:
        """Append a text token through the cache; the next logits (V,)."""
        m = self.model
        self.ids.append(token)
        self.gen.append(False)
        self.cmp.append(False)
        out = m.llm(input_ids=torch.tensor([[token]], device=m.device), use_cache=True,
                    attention_mask=torch.ones(1, len(self.ids), dtype=torch.long, device=m.device),
                    **_cache_kwargs(m.llm, self.cache))
        self.cache = out.cache if getattr(out, "cache", None) is not None else out.past_key_values
        return out.logits[0, -1]

    def extend(self, ids: list[int], gen: list[bool]) -> None:
        self.ids += ids
        self.gen += gen
        self.cmp += [False] * len(ids)


@dataclass
class StorySegment:
    """One segment as the loop writes it: the text before its clip, the clip's tokens and whether ``<vid>`` was
    appended (the model did not open it)."""

    text: str
    tokens: torch.Tensor  # (q, d) float32 on the CPU, ready for the de-tokenizer
    forced_video: bool


def generate_story(model, prompt, num_segments: int = 3, mode: str = "sample", var_scale: float | None = None,
                   greedy: bool = False, temperature: float | None = None, top_p: float | None = None,
                   max_new_tokens: int = 64, generator: torch.Generator | None = None) -> GeneratedStory:
    """``num_segments`` (text, clip) pairs continuing ``prompt`` (``SequenceBuilder.story_prompt``).

    Text decoding: the reference temperature / top-p (the config's) unless ``greedy``; frame placeholders and
    ``</vid>`` are never sampled as text; at most ``max_new_tokens`` per segment. When the model ends the story
    (``</s>``) or runs out of tokens before opening a video, ``<vid>`` is appended (logged, and recorded in
    ``forced_video``). Clips: GMM ``mode`` ("sample", "mean", "top") with variances x ``var_scale``."""
    ctx = _Context(model, prompt)
    segments = list(story_segments(model, prompt, num_segments, mode, var_scale, greedy, temperature, top_p,
                                   max_new_tokens, generator, _context=ctx))
    return GeneratedStory([s.text for s in segments], torch.stack([s.tokens for s in segments]),
                          torch.tensor(ctx.ids), [s.forced_video for s in segments])


def story_segments(model, prompt, num_segments: int = 3, mode: str = "sample", var_scale: float | None = None,
                   greedy: bool = False, temperature: float | None = None, top_p: float | None = None,
                   max_new_tokens: int = 64, generator: torch.Generator | None = None, *, _context=None):
    """``generate_story`` one ``StorySegment`` at a time, each yielded as soon as its tokens exist (the next
    segment is written when the iterator is advanced). Same options, same draws from ``generator``: the segments
    equal ``generate_story``'s. The arguments are checked at once, before the iterator is returned."""
    if num_segments < 1:
        raise ValueError(f"num_segments must be >= 1, got {num_segments}")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    model._require_tokenizer()
    ctx = _Context(model, prompt) if _context is None else _context
    return _segments(model, ctx, num_segments, mode, var_scale, greedy, temperature, top_p, max_new_tokens,
                     generator)


def _segments(model, ctx: _Context, num_segments, mode, var_scale, greedy, temperature, top_p, max_new_tokens,
              generator):
    ids = model.token_ids
    cfg = model.config
    q = cfg.num_queries
    var_scale = cfg.var_scale if var_scale is None else var_scale
    temperature = temperature or cfg.temperature
    top_p = top_p or cfg.top_p
    banned = torch.tensor(ids.placeholders() + [ids.vid_end], device=model.device)
    with torch.no_grad():
        _, logits = ctx.full_pass()
    for k in range(num_segments):
        with torch.no_grad():  # per segment: a generator's frames may resume in another grad mode
            start = len(ctx.ids)
            opened = False
            for _ in range(max_new_tokens):
                logits = logits.clone()
                logits[banned] = float("-inf")
                token = sample_next(logits, greedy, temperature, top_p, generator)
                if token == ids.vid_start:
                    opened = True
                    break
                if token == ids.eos:
                    break
                logits = ctx.step(token)
            if not opened:
                logger.info("segment %d: the model did not open a video (<vid>); appending it", k + 1)
            text = model.tokenizer.decode(ctx.ids[start:], skip_special_tokens=True).strip()
            clip = [ids.vid_start, ids.frame_start, *ids.frames[:q], ids.frame_end, ids.vid_end]
            ctx.extend(clip, [False, False] + [True] * q + [False, False])
            hidden, logits = ctx.full_pass()
            queries = hidden[-(q + 2): -2]  # (q, h): the frame tokens, before </frame> </vid>
            tokens = model.gmm_head.predict(queries, mode, var_scale, generator)  # (q, d)
        yield StorySegment(text, tokens.float().cpu(), not opened)
