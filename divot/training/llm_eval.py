"""Held-out evaluation of Divot-LLM training on the shapes world (or any captioned clips with attributes).

- caption accuracy: greedy captions of held-out clips; the colour / shape / motion words found in them are
  compared with the clip's attributes (first object);
- GMM NLL / d of the clip tokens in the stage's generation format (lower is better), and the caption LM loss;
- multiple choice: EgoSchema-format questions answered by the option with the highest log-likelihood
  (per token) after the QA prompt;
- stories (``eval.stories``): LM loss of the texts and delimiters and GMM NLL / d of every clip in the story
  format, over held-out stories.
"""

from __future__ import annotations

import json
import logging
from contextlib import contextmanager
from pathlib import Path

import torch

from divot.data.shapes.world import parse_caption
from divot.data.stories import read_stories
from divot.data.token_cache import TokenCache
from divot.llm import GENERATION_TEMPLATES, DivotLLM, LLMCollator, SequenceBuilder
from divot.training.llm_data import read_records

logger = logging.getLogger(__name__)


@contextmanager
def plain_llm(model: DivotLLM):
    """Run generation / scoring on the LLM itself: peft's wrapper does not pass every argument of the
    ``transformers`` API through, and the LoRA layers live inside the base model anyway."""
    llm = model.llm
    if hasattr(llm, "get_base_model"):
        model.llm = llm.get_base_model()
    try:
        yield model
    finally:
        model.llm = llm


class LLMEvaluator:
    """Evaluates ``model`` on the held-out clips of ``cfg.eval`` and appends the results to ``eval.jsonl``."""

    def __init__(self, cfg, model: DivotLLM, builder: SequenceBuilder, device: torch.device, autocast,
                 out_dir: Path | None, caches: dict[str, TokenCache]):
        self.cfg, self.ecfg, self.model, self.builder = cfg, cfg.eval, model, builder
        self.device, self.autocast, self.out_dir = device, autocast, out_dir
        self.records, self.questions, self.stories = [], [], []
        self.collator = LLMCollator(builder.ids.pad, model.config.num_queries)
        if self.ecfg.stories:
            self._load_stories(caches)
        if not self.ecfg.annotations:
            return
        self.cache = self._cache(caches, self.ecfg.tokens)
        self.records = [r for r in read_records(self.ecfg.annotations) if r.video_id in self.cache and r.caption]
        if not self.records:
            raise ValueError(f"eval: no captioned clip of {self.ecfg.annotations} is in the token cache "
                             f"{self.ecfg.tokens}")
        if self.ecfg.questions:
            self.questions = [r for r in read_records(self.ecfg.questions, self.ecfg.answers)
                              if r.video_id in self.cache and r.options]

    @staticmethod
    def _cache(caches: dict[str, TokenCache], path: str) -> TokenCache:
        if path not in caches:
            caches[path] = TokenCache(path)
        return caches[path]

    def _load_stories(self, caches) -> None:
        cache = self._cache(caches, self.ecfg.story_tokens)
        for story in read_stories(self.ecfg.stories)[: self.ecfg.num_stories]:
            ids = [story.segment_id(k) for k in range(len(story.segments))]
            if all(i in cache for i in ids):
                self.stories.append((story, torch.stack([cache[i][0] for i in ids]).float()))
        if not self.stories:
            raise ValueError(f"eval: no story of {self.ecfg.stories} has its segments in the token cache "
                             f"{self.ecfg.story_tokens}")

    def story_losses(self) -> dict:
        """Mean LM loss (texts, ``<vid>``, ``</vid>``, ``</s>``) and GMM NLL / d over the held-out stories."""
        if not self.stories:
            return {}
        samples = [self.builder.story(s.instruction, s.texts, clips) for s, clips in self.stories]
        lm = nll = 0.0
        for batch in self._batches(samples):
            out = self.model(batch)
            n = batch["input_ids"].shape[0]
            lm += float(out["lm_loss"]) * n
            nll += float(out["gmm_loss"]) * n
        return {"story_lm_loss": lm / len(samples), "story_gmm_nll": nll / len(samples),
                "num_stories": len(samples)}

    def _clips(self, record) -> torch.Tensor:
        return self.cache[record.video_id][: self.cfg.data.max_clips].float()  # (clips, q, d)

    def _prompt(self, record):
        if self.ecfg.caption_question:
            return self.builder.qa_prompt(self._clips(record), self.ecfg.caption_question)
        return self.builder.caption_prompt(self._clips(record))

    def caption_accuracy(self) -> dict:
        records = self.records[: self.ecfg.num_caption]
        if not records:
            return {}
        correct = {"colour": 0, "shape": 0, "motion": 0, "all": 0}
        examples = []
        with plain_llm(self.model) as model:
            for r in records:
                text = model.generate_text(self._prompt(r), greedy=True, max_new_tokens=self.ecfg.max_new_tokens)
                found = parse_caption(text)
                truth = r.attributes[0] if r.attributes else parse_caption(r.caption)
                hits = {k: found[k] is not None and found[k] == truth.get(k) for k in ("colour", "shape", "motion")}
                for k, hit in hits.items():
                    correct[k] += int(hit)
                correct["all"] += int(all(hits.values()))
                if len(examples) < 4:
                    examples.append({"video_id": r.video_id, "caption": r.caption, "generated": text})
        n = max(len(records), 1)
        return {**{f"caption_{k}_acc": v / n for k, v in correct.items()}, "caption_examples": examples,
                "num_captioned": len(records)}

    def _batches(self, samples):
        for i in range(0, len(samples), self.ecfg.batch_size):
            batch = self.collator(samples[i: i + self.ecfg.batch_size])
            yield {k: v.to(self.device) for k, v in batch.items()}

    def losses(self) -> dict:
        """GMM NLL / d over held-out generation targets, LM loss of held-out captions."""
        records = self.records[: self.ecfg.num_gmm]
        if not records:
            return {}
        b = self.builder
        if self.cfg.stage == "pretrain":
            gen = [b.generation(r.caption, self._clips(r)[:1]) for r in records]
        else:
            gen = [b.generation_instruction(r.caption, self._clips(r)[:1], template=GENERATION_TEMPLATES[0])
                   for r in records]
        cap = [b.caption(self._clips(r), r.caption) for r in records]
        nll = lm = 0.0
        for batch in self._batches(gen):
            nll += float(self.model(batch)["gmm_loss"]) * int(batch["num_gen_clips"].sum())
        for batch in self._batches(cap):
            lm += float(self.model(batch)["lm_loss"]) * batch["input_ids"].shape[0]
        return {"gmm_nll": nll / max(len(gen), 1), "caption_lm_loss": lm / max(len(cap), 1)}

    def multiple_choice(self) -> dict:
        questions = self.questions[: self.ecfg.num_mc]
        if not questions:
            return {}
        correct = 0
        with plain_llm(self.model) as model:
            for r in questions:
                question, _ = r.turns[0]
                prompt = self.builder.qa_prompt(self._clips(r), question)
                scores = model.score_continuations(prompt, list(r.options), normalize=True)
                correct += int(int(scores.argmax()) == r.answer_index)
        return {"mc_acc": correct / len(questions), "num_mc": len(questions)}

    @torch.no_grad()
    def run(self, step: int) -> dict:
        was_training = self.model.training
        self.model.eval()
        try:
            with self.autocast():
                result = {"step": step, **self.losses(), **self.caption_accuracy(), **self.multiple_choice(),
                          **self.story_losses()}
        finally:
            self.model.train(was_training)
        logger.info("eval step %d: %s", step, ", ".join(f"{k} {v:.4f}" for k, v in result.items()
                                                          if isinstance(v, float)))
        if self.out_dir is not None:
            with (self.out_dir / "eval.jsonl").open("a") as f:
                f.write(json.dumps(result) + "\n")
        return result
