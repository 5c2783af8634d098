"""Inference on a ``DivotLLM``: text from video, video tokens from text, continuation scoring.

Frame placeholders (``<frame>``, ``</frame>``, ``<frame_NNNNN>``, ``<img>``, ``</img>``) are suppressed in every
text generation: they are never produced as text. ``<vid>`` / ``</vid>`` are suppressed too, except while
generating towards a video. Prompts are ``LLMSample``s from ``SequenceBuilder`` (``qa_prompt``,
``caption_prompt``, ``generation_prompt``). ``generate_texts`` and ``score_continuations_batch`` take several
prompts at once (left-padded, ``divot.llm.batch_generation``).
"""

from __future__ import annotations

import inspect
import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from divot.llm.masks import build_attention_mask_4d

logger = logging.getLogger(__name__)


@dataclass
class GeneratedVideo:
    tokens: torch.Tensor  # (clips, q, d) float32, ready for the de-tokenizer
    text: str  # text produced before <vid> (empty when <vid> was forced)
    input_ids: torch.Tensor  # (s,) the whole sequence, ending with </vid>


class DivotGenerationMixin:
    """Mixed into ``DivotLLM`` (uses ``llm``, ``tokenizer``, ``token_ids``, ``config``, ``embed``, ``gmm_head``)."""

    def _require_tokenizer(self):
        if self.token_ids is None:
            raise ValueError("generation needs the tokenizer: build the DivotLLM with one")
        return self.token_ids

    def _prompt_embeds(self, prompt, extra_ids: list[int] | None = None):
        """(1, s, h) embeddings of the prompt ids (+ extra ids), comprehension clips inserted."""
        ids = prompt.input_ids.tolist() + list(extra_ids or [])
        cmp = torch.zeros(len(ids), dtype=torch.bool)
        cmp[: len(prompt)] = prompt.cmp_mask
        input_ids = torch.tensor([ids], device=self.device)
        return input_ids, cmp[None].to(self.device), self.embed(input_ids, cmp[None].to(self.device),
                                                                prompt.cmp_clips.to(self.device))

    @torch.no_grad()
    def generate_ids(self, prompt, max_new_tokens: int | None = None, temperature: float | None = None,
                     top_p: float | None = None, greedy: bool = False, allow_video: bool = False,
                     stop_ids: list[int] | None = None, streamer=None, stopping_criteria=None) -> list[int]:
        """New token ids after ``prompt`` (an ``LLMSample``), up to and including ``</s>`` (or a ``stop_ids`` id).

        Sampling with the reference defaults (temperature 0.7, top-p 0.5, 256 new tokens) unless ``greedy``.
        ``streamer`` / ``stopping_criteria`` go to ``transformers``' ``generate`` (``divot.chat.streaming``)."""
        config = self.generation_config(max_new_tokens, temperature, top_p, greedy, allow_video, stop_ids)
        _, _, embeds = self._prompt_embeds(prompt)
        attention_mask = torch.ones(embeds.shape[:2], dtype=torch.long, device=self.device)
        out = self.llm.generate(inputs_embeds=embeds, attention_mask=attention_mask, generation_config=config,
                                streamer=streamer, stopping_criteria=stopping_criteria)
        return out[0].tolist()  # with inputs_embeds only the new tokens come back (ending with a stop id, if hit)

    def generation_config(self, max_new_tokens: int | None = None, temperature: float | None = None,
                          top_p: float | None = None, greedy: bool = False, allow_video: bool = False,
                          stop_ids: list[int] | None = None):
        """The ``transformers.GenerationConfig`` of ``generate_ids`` (placeholders suppressed, stop ids, defaults)."""
        from transformers import GenerationConfig

        ids = self._require_tokenizer()
        cfg = self.config
        suppress = ids.placeholders() + ([] if allow_video else [ids.vid_start, ids.vid_end])
        kwargs = dict(max_new_tokens=max_new_tokens or cfg.max_new_tokens, suppress_tokens=suppress,
                      eos_token_id=[ids.eos, *(stop_ids or [])], pad_token_id=ids.pad, bos_token_id=ids.bos)
        if greedy:
            kwargs.update(do_sample=False)
        else:
            kwargs.update(do_sample=True, temperature=temperature or cfg.temperature, top_p=top_p or cfg.top_p,
                          top_k=0)
        return GenerationConfig(**kwargs)

    def generate_text(self, prompt, **kwargs) -> str:
        """Text continuing ``prompt`` (answers, captions); frame tokens never appear. See ``generate_ids``."""
        new = self.generate_ids(prompt, **kwargs)
        return self.tokenizer.decode(new, skip_special_tokens=True).strip()

    def generate_texts(self, prompts: list, batch_size: int | None = None, **kwargs) -> list[str]:
        """``generate_text`` for several prompts, decoded together in left-padded batches of ``batch_size`` (None:
        all at once); greedy answers equal the one-prompt answers. See ``batch_generation.generate_ids_batch``."""
        from divot.llm.batch_generation import generate_ids_batch

        self._require_tokenizer()
        new = generate_ids_batch(self, prompts, batch_size, **kwargs)
        return [self.tokenizer.decode(row, skip_special_tokens=True).strip() for row in new]

    @torch.no_grad()
    def query_hidden_states(self, input_ids: torch.Tensor, cmp_mask: torch.Tensor, cmp_clips: torch.Tensor,
                            gen_mask: torch.Tensor) -> torch.Tensor:
        """One forward pass (1, s) with bidirectional query blocks; the normed last hidden states (1, s, h)."""
        embeds = self.embed(input_ids, cmp_mask, cmp_clips)
        mask = build_attention_mask_4d(torch.ones_like(input_ids), gen_mask, self.config.num_queries,
                                       dtype=embeds.dtype)
        hidden, _ = self.hidden_and_logits(embeds, mask)
        return hidden

    @torch.no_grad()
    def generate_video(self, prompt, num_clips: int = 1, mode: str = "sample", var_scale: float | None = None,
                       generator: torch.Generator | None = None, force_video: bool = True,
                       **text_kwargs) -> GeneratedVideo:
        """Clip tokens (num_clips, q, d) for ``prompt`` (e.g. ``SequenceBuilder.generation_prompt``).

        Text is generated until ``<vid>`` (or ``<vid>`` is appended at once with ``force_video``), then for each
        clip ``<frame>`` + q frame tokens are appended and one forward pass reads the q query hidden states ->
        GMM -> ``mode`` ("sample", "mean", "top"; variances x ``var_scale``, default ``config.var_scale``)."""
        ids = self._require_tokenizer()
        q = self.config.num_queries
        var_scale = self.config.var_scale if var_scale is None else var_scale
        text_ids: list[int] = []
        if not force_video:
            text_ids = self.generate_ids(prompt, allow_video=True, stop_ids=[ids.vid_start], **text_kwargs)
            if not text_ids or text_ids[-1] != ids.vid_start:
                logger.info("the model did not open a video (<vid>); appending it")
                text_ids = [t for t in text_ids if t not in (ids.eos, ids.vid_start)]
            else:
                text_ids = text_ids[:-1]
        seq = prompt.input_ids.tolist() + text_ids + [ids.vid_start]
        gen = [False] * len(seq)
        tokens = []
        for _ in range(num_clips):
            seq += [ids.frame_start, *ids.frames[:q]]
            gen += [False] + [True] * q
            input_ids = torch.tensor([seq], device=self.device)
            cmp = torch.zeros(1, len(seq), dtype=torch.bool, device=self.device)
            cmp[0, : len(prompt)] = prompt.cmp_mask.to(self.device)
            gen_mask = torch.tensor([gen], device=self.device)
            hidden = self.query_hidden_states(input_ids, cmp, prompt.cmp_clips.to(self.device), gen_mask)
            queries = hidden[0, -q:]  # (q, h)
            tokens.append(self.gmm_head.predict(queries, mode, var_scale, generator))  # (q, d)
            seq.append(ids.frame_end)
            gen.append(False)
        seq.append(ids.vid_end)
        text = self.tokenizer.decode(text_ids, skip_special_tokens=True).strip()
        return GeneratedVideo(torch.stack(tokens).float().cpu(), text, torch.tensor(seq))

    def generate_story(self, prompt, num_segments: int = 3, **kwargs):
        """Text and clip tokens, segment after segment, for a story prompt (``SequenceBuilder.story_prompt``);
        see ``divot.llm.story.generate_story`` for the loop and the options."""
        from divot.llm.story import generate_story

        self._require_tokenizer()
        return generate_story(self, prompt, num_segments, **kwargs)

    def _encode_continuations(self, continuations: list[str]) -> list[list[int]]:
        self._require_tokenizer()
        ids = []
        for text in continuations:
            cont = self.tokenizer(text, add_special_tokens=False).input_ids
            if not cont:
                raise ValueError(f"continuation {text!r} encodes to no tokens")
            ids.append(cont)
        return ids

    def score_continuations(self, prompt, continuations: list[str], normalize: bool = False) -> torch.Tensor:
        """Log-likelihood (float32, (n,)) of each continuation text after ``prompt``; the prompt runs once and
        its KV cache is shared: all n continuations run in one more forward pass (right-padded).
        ``normalize`` divides by the continuation's token count."""
        return self.score_continuation_ids(prompt, self._encode_continuations(continuations), normalize)

    def score_continuation_ids(self, prompt, continuations: list[list[int]], normalize: bool = False) -> torch.Tensor:
        """``score_continuations`` for token id lists (e.g. ending with ``</s>``)."""
        from divot.llm.batch_generation import score_continuation_ids_batch

        return score_continuation_ids_batch(self, [prompt], [continuations], normalize)[0]

    def score_continuations_batch(self, prompts: list, continuations: list[list[str]],
                                  normalize: bool = False) -> list[torch.Tensor]:
        """``score_continuations`` for several prompts at once (e.g. several multiple-choice questions): their
        prefixes run in one left-padded forward pass, all their continuations in one more. One (n_i,) float32
        tensor per prompt."""
        from divot.llm.batch_generation import score_continuation_ids_batch

        if len(prompts) != len(continuations):
            raise ValueError(f"{len(prompts)} prompts but {len(continuations)} lists of continuations")
        ids = [self._encode_continuations(list(conts)) for conts in continuations]
        return score_continuation_ids_batch(self, prompts, ids, normalize)


def _cache_kwargs(llm, cache) -> dict:
    """The KV cache argument under its name in this transformers version (``cache`` from 5.24 on)."""
    params = inspect.signature(llm.forward).parameters
    return {"cache": cache} if "cache" in params else {"past_key_values": cache}


def write_generated_tokens(path: str | Path, tokens: torch.Tensor, videos: list[str | Path],
                           clip_index: list[int] | torch.Tensor | None = None, mode: str = "sample",
                           var_scale: float | None = None) -> Path:
    """Write generated tokens (n, q, d) as a Divot token file (``divot.data.token_files``) for the
    de-tokenizer (T3 adaptation, reconstruction); ``videos`` names the real clip each row stands for."""
    from divot.data.token_files import write_token_file

    source = f"llm-gmm mode={mode}" + (f" var_scale={var_scale}" if var_scale is not None else "")
    return write_token_file(path, tokens, videos, clip_index, source=source)
