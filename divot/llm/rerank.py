"""Noisy-channel reranking of captions: beam search proposes, both directions of Divot-LLM choose.

Divot-LLM reads video (text after the clip tokens: log P(caption | video)) and writes it (the GMM head's density
of clip tokens after a caption: log p(video | caption)). A caption model on its own leans on its text prior: after a
colour word it only names the shapes that colour was seen with in training. Noisy-channel reranking (Yu et al.
2017, "The neural noisy channel"; Yee et al. 2019 for translation) lets the generative direction vote:

    score(caption) = log P(caption | video) + channel_weight * log p(video tokens | caption)

over ``num_candidates`` distinct captions from beam search (``sampled_candidates`` proposes by sampling instead;
on the shapes world its candidates reranked worse, ``docs/experiments.md``, 2026-12-02). The channel term is
read in the generation-instruction format (``<s>[INST] {template} caption [/INST]\\n <vid> clip </vid>``, the
format ``generate_video`` prompts with) and sums the log-density over every value of the clips' tokens (clips x
q x d terms, thousands), hence a weight well below 1. On the shapes world (``docs/experiments.md``, 2026-12-02)
the weight 0.1 was chosen on a validation split of held-out-pair clips, separate from the demo's clips;
averaging the channel over the three generation templates, adding one-word deletions of the candidates, or an
LLM trained with word dropout did not pick better.

Answer checks (``AnswerCheck``) add a third vote: the model is asked a question about the clip ("what shape is
the object?") and each candidate is scored by the log-probability the model's answer gives to what the
candidate says (the first of the check's answers the caption mentions), ``+ check_weight * log P(answer |
video, question)``, normalised over the check's answers. An answer is read after the video without any caption
words before it, so it is free of the caption's text prior (on the shapes world, held-out caption shape 0.91 ->
0.945 on the validation split with the shape question, weight 4; ``docs/experiments.md``, 2026-12-03).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

import torch

from divot.llm.sequences import GENERATION_TEMPLATES


@dataclass(frozen=True)
class RankedCaption:
    """One candidate: its text and the two log-likelihoods behind its score (natural logs)."""

    text: str
    caption_logprob: float  # log P(caption ids, ending with </s> when beam search reached it | video)
    channel_logprob: float  # log p(clip tokens | caption) under the GMM head, summed over every token value
    score: float  # caption_logprob + channel_weight * channel_logprob (+ check_weight * check_logprob)
    check_logprob: float = 0.0  # sum over the answer checks of log P(the caption's answer | video, question)


@dataclass(frozen=True)
class AnswerCheck:
    """A question whose answer a caption implies: ``question`` is asked about the clip; a caption's answer is the
    earliest of ``answers`` it mentions as a whole word (``answer_of``)."""

    question: str
    answers: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.question.strip() or len(self.answers) < 2 or any(not a.strip() for a in self.answers):
            raise ValueError(f"AnswerCheck needs a question and at least two non-empty answers, got "
                             f"{self.question!r}, {self.answers!r}")

    def answer_of(self, caption: str) -> str | None:
        """The earliest of ``answers`` that ``caption`` mentions as a whole word (case-insensitive), else None."""
        found = [(m.start(), a) for a in self.answers
                 for m in [re.search(rf"\b{re.escape(a.lower())}\b", caption.lower())] if m]
        return min(found)[1] if found else None


@torch.no_grad()
def answer_logprobs(llm, builder, clips: torch.Tensor, check: AnswerCheck) -> dict[str, float]:
    """log P(answer | clips, question) for every answer of ``check`` (each followed by ``</s>``, as QA training
    labels them), normalised over the check's answers."""
    prompt = builder.qa_prompt(clips, check.question)
    ids = [builder.encode(a) + [builder.ids.eos] for a in check.answers]
    return dict(zip(check.answers, llm.score_continuation_ids(prompt, ids).log_softmax(0).tolist(), strict=True))


def check_logprob(caption: str, checks, answer_scores: list[dict[str, float]]) -> float:
    """The answer checks' vote for ``caption``: the sum of its answers' log-probabilities; a caption that names
    none of a check's answers gets that check's least likely answer."""
    total = 0.0
    for check, scores in zip(checks, answer_scores, strict=True):
        said = check.answer_of(caption)
        total += scores[said] if said is not None else min(scores.values())
    return total


@torch.no_grad()
def beam_candidates(llm, prompt, num_beams: int, max_new_tokens: int | None = None) -> list[list[int]]:
    """Up to ``num_beams`` distinct continuations of ``prompt`` (an ``LLMSample``) by beam search, best first,
    each cut after its ``</s>`` (padding removed); frame tokens and ``<vid>`` / ``</vid>`` are never proposed."""
    if num_beams < 1:
        raise ValueError(f"num_candidates must be >= 1, got {num_beams}")
    return _generate(llm, prompt, max_new_tokens, num_beams=num_beams, num_return_sequences=num_beams,
                     do_sample=False)


@torch.no_grad()
def sampled_candidates(llm, prompt, num_samples: int, temperature: float = 1.0, seed: int = 0,
                       max_new_tokens: int | None = None) -> list[list[int]]:
    """The distinct continuations among ``num_samples`` ancestral samples of ``prompt`` at ``temperature`` (no
    top-k / top-p cut), most frequent first, each cut after its ``</s>``; reproducible with ``seed``."""
    if num_samples < 1:
        raise ValueError(f"num_candidates must be >= 1, got {num_samples}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    with torch.random.fork_rng(devices=[llm.device] if llm.device.type == "cuda" else []):
        torch.manual_seed(seed)
        rows = _generate(llm, prompt, max_new_tokens, num_beams=1, num_return_sequences=num_samples,
                         do_sample=True, temperature=temperature, top_k=0, top_p=1.0, distinct=False)
    return [list(row) for row, _ in Counter(map(tuple, rows)).most_common()]  # ties: first drawn first


def _generate(llm, prompt, max_new_tokens: int | None, distinct: bool = True, **options) -> list[list[int]]:
    from transformers import GenerationConfig

    ids = llm._require_tokenizer()
    _, _, embeds = llm._prompt_embeds(prompt)
    config = GenerationConfig(max_new_tokens=max_new_tokens or llm.config.max_new_tokens, eos_token_id=[ids.eos],
                              pad_token_id=ids.pad, bos_token_id=ids.bos,
                              suppress_tokens=ids.placeholders() + [ids.vid_start, ids.vid_end], **options)
    out = llm.llm.generate(inputs_embeds=embeds, generation_config=config,
                           attention_mask=torch.ones(embeds.shape[:2], dtype=torch.long, device=llm.device))
    candidates: list[list[int]] = []
    for row in out.tolist():  # with inputs_embeds only the new tokens come back
        cut = row[: row.index(ids.eos) + 1] if ids.eos in row else [t for t in row if t != ids.pad]
        if cut and (not distinct or cut not in candidates):
            candidates.append(cut)
    return candidates


@torch.no_grad()
def channel_logprob(llm, builder, caption: str, clips: torch.Tensor,
                    template: str | None = GENERATION_TEMPLATES[0]) -> float:
    """log p(clips | caption): the GMM head's log-density of ``clips`` (n, q, d) generated after ``caption``,
    summed over all n x q x d values."""
    from divot.llm.sequences import LLMCollator

    sample = builder.generation_instruction(caption, clips, template=template)
    batch = LLMCollator(builder.ids.pad, llm.config.num_queries)([sample])
    batch = {k: v.to(llm.device) for k, v in batch.items()}
    nll_per_value = llm(batch)["gmm_loss"]  # mean over the clips' tokens, / d
    return -float(nll_per_value) * batch["gen_clips"].numel()


def score_candidates(llm, builder, clips: torch.Tensor, prompt, candidates: list[list[int]],
                     channel_weight: float = 0.1,
                     template: str | None = GENERATION_TEMPLATES[0], checks=(),
                     check_weight: float = 0.0) -> list[RankedCaption]:
    """Score continuation ids of the caption ``prompt`` of ``clips`` (n, q, d) by both directions (and the
    ``AnswerCheck``s at ``check_weight``), best score first; candidates that decode to no text are dropped."""
    if channel_weight < 0 or check_weight < 0:
        raise ValueError(f"channel_weight and check_weight must be >= 0, got {channel_weight}, {check_weight}")
    answers = [answer_logprobs(llm, builder, clips, c) for c in checks]
    forward = llm.score_continuation_ids(prompt, candidates).tolist() if candidates else []
    ranked = []
    for ids, logp in zip(candidates, forward, strict=True):
        text = llm.tokenizer.decode(ids, skip_special_tokens=True).strip()
        if text:
            channel = channel_logprob(llm, builder, text, clips, template)
            checked = check_logprob(text, checks, answers)
            ranked.append(RankedCaption(text, logp, channel, logp + channel_weight * channel + check_weight * checked,
                                        checked))
    return sorted(ranked, key=lambda r: r.score, reverse=True)


def rerank_captions(llm, builder, clips: torch.Tensor, num_candidates: int = 16, channel_weight: float = 0.1,
                    template: str | None = GENERATION_TEMPLATES[0],
                    max_new_tokens: int | None = None, checks=(), check_weight: float = 0.0) -> list[RankedCaption]:
    """Caption ``clips`` (n, q, d) by noisy-channel reranking: ``num_candidates`` beam-search captions of the
    caption prompt, best score first (see the module docstring); ``checks`` (``AnswerCheck``s) vote at
    ``check_weight``."""
    if channel_weight < 0 or check_weight < 0:
        raise ValueError(f"channel_weight and check_weight must be >= 0, got {channel_weight}, {check_weight}")
    prompt = builder.caption_prompt(clips)
    candidates = beam_candidates(llm, prompt, num_candidates, max_new_tokens)
    ranked = score_candidates(llm, builder, clips, prompt, candidates, channel_weight, template, checks,
                              check_weight)
    if not ranked:
        raise ValueError("beam search proposed no non-empty caption")
    return ranked
