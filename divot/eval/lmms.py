"""A ``divot`` model for the lmms-eval harness (``pip install lmms-eval``; not a dependency of divot).

    lmms-eval --model divot --model_args pretrained=shapes-tiny,device=cuda --tasks egoschema_subset_mcppl

Registration: the entry point ``divot = "divot.eval.lmms:model_manifest"`` in the group ``lmms_eval.models``
(pyproject.toml). lmms-eval 0.7's ``ModelRegistryV2.load_entrypoint_manifests`` (lmms_eval/models/
registry_v2.py) loads that group and accepts a callable returning a ``ModelManifest``; the class is then
imported from ``simple_class_path`` and checked to subclass ``lmms_eval.api.model.lmms`` with
``is_simple = True``. Without lmms-eval installed the class derives from a small stand-in, so it can be
imported and unit-tested with request objects that only have ``.args``.

Requests (lmms_eval/api/task.py ``construct_requests``, models/simple/llava_vid.py):
- ``loglikelihood``: ``args = (context, continuation, doc_to_visual, doc_id, task, split)``; the visuals are
  ``doc_to_visual(self.task_dict[task][split][doc_id])`` (video paths). Returns ``(value, is_greedy)`` per
  request. **The value is the loss** (mean negative log-likelihood per continuation token), not a log
  probability: lmms-eval's multiple-choice scoring takes ``np.argmin`` of the values ("since we return the
  actual loss in many model loglikelihood we just use the argmin here", api/task.py
  ``process_results``), EgoSchema's ``egoschema_process_results`` (tasks/egoschema/utils.py) picks the
  option with the lowest value, and llava_vid returns ``outputs["loss"]`` the same way. So the option the
  harness picks is the one with the highest mean log-likelihood, as in ``divot eval egoschema --mode ll``.
- ``generate_until``: ``args = (context, gen_kwargs, doc_to_visual, doc_id, task, split)``; ``gen_kwargs``
  may hold ``until`` (str or list), ``max_new_tokens``, ``temperature`` (0 = greedy), ``do_sample``,
  ``top_p``. The text is cut at the first ``until`` string.

The prompt is the Divot-LLM QA turn ``<s>[INST] <vid> clips </vid> {context} [/INST]\\n``; each video is
tokenized once and kept for the requests that share it. ``loglikelihood`` groups the requests by (video,
context): a multiple-choice question's five options are one group, scored as ``divot eval egoschema --mode ll``
scores them (the prompt once, the options in one more pass over its KV cache; the same numbers), and
``batch_size`` groups run together. ``benchmarks/lmms_eval_local.sh`` runs the harness's CLI with this class on a
shapes-world task and checks its accuracy against ``divot eval egoschema`` (docs/lmms_eval.md).
"""

from __future__ import annotations

import logging

import torch
from tqdm.auto import tqdm

logger = logging.getLogger(__name__)

try:  # the harness's base class when it is installed
    from lmms_eval.api.model import lmms as _LMMSBase
except ImportError:  # a stand-in with what the harness's base provides and this class uses
    class _LMMSBase:  # noqa: N801 - mirrors lmms_eval.api.model.lmms
        is_simple = True

        def __init__(self) -> None:
            self._rank, self._world_size, self.task_dict = 0, 1, {}

        @property
        def rank(self) -> int:
            return self._rank

        @property
        def world_size(self) -> int:
            return self._world_size


def _harness_passes_tuples_through() -> bool:
    """Whether the installed harness hands a ``(loss, is_greedy)`` response to the task unchanged. lmms-eval 0.7.3's
    evaluator sends every response through ``api/instance.py: unwrap_generation_output``, which keeps a str or a
    ``GenerationResult``'s ``.text`` but turns anything else into ``str(output)``: the task's ``process_results``
    then gets ``"(0.1, True)"`` and fails to unpack it (its own egoschema mcppl task too). Probed, not keyed on
    a version, so that a harness that keeps tuples gets plain tuples."""
    try:
        from lmms_eval.api.instance import unwrap_generation_output
    except ImportError:  # the stand-in base, or a harness without that step
        return True
    return not isinstance(unwrap_generation_output((0.0, False))[0], str)


def _for_harness(responses: list[tuple[float, bool]]) -> list:
    """``responses`` as they reach the task intact: plain, or each wrapped in ``GenerationResult`` where the
    harness would stringify a tuple (its ``.text`` is passed on as it is)."""
    if _harness_passes_tuples_through():
        return responses
    from lmms_eval.api.instance import GenerationResult

    return [GenerationResult(text=r) for r in responses]


def _batch_size(value) -> int:
    """lmms-eval's ``--batch_size`` (1 by default; a string when given): questions scored per pass."""
    if isinstance(value, str) and not value.strip().isdigit():
        logger.warning("divot lmms-eval model: batch_size %r is not supported, using 1", value)
        return 1
    size = int(value)
    if size < 1:
        raise ValueError(f"batch_size must be >= 1, got {value!r}")
    return size


def model_manifest():
    """The entry point's payload: ``ModelManifest("divot", simple_class_path="divot.eval.lmms.DivotLMMs")``."""
    from lmms_eval.models.registry_v2 import ModelManifest

    return ModelManifest(model_id="divot", simple_class_path="divot.eval.lmms.DivotLMMs")


class DivotLMMs(_LMMSBase):
    """lmms-eval model ``divot``. ``model_args``: ``pretrained`` (a Divot directory or bundled name),
    ``device`` (auto, cpu, cuda ...; the harness's ``--device`` arrives here too), ``dtype`` (auto, float32,
    bfloat16), ``max_clips``, ``batch_size`` (the harness's ``--batch_size``: questions, i.e. (video, context)
    groups, scored per pass; 1 by default). ``divot`` passes a loaded ``Divot`` instead (tests)."""

    is_simple = True

    def __init__(self, pretrained: str = "shapes-tiny", device: str = "auto", dtype: str = "auto",
                 max_clips: int | None = None, batch_size: int = 1, divot=None, **kwargs):
        super().__init__()
        if kwargs:
            logger.warning("divot lmms-eval model: ignoring unknown model_args %s", sorted(kwargs))
        if divot is None:  # the harness is the entry point here, so this class picks the device
            from divot.chat import Divot

            dev = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device)
            if dtype == "auto":
                dtype = "bfloat16" if dev.type == "cuda" else "float32"
            divot = Divot.from_pretrained(pretrained, device=dev, dtype=getattr(torch, dtype))
        self.model = divot
        self.max_clips = int(max_clips) if max_clips is not None else None
        self.batch_size = _batch_size(batch_size)
        self._tokens: dict[str, torch.Tensor] = {}

    # -- inputs ---------------------------------------------------------------------------------------------
    def _video(self, doc_to_visual, doc_id, task, split) -> str | None:
        """The request's first visual (a video path), or None for a text-only request."""
        if doc_to_visual is None:
            return None
        visuals = doc_to_visual(self.task_dict[task][split][doc_id])
        visuals = [v for v in (visuals or []) if v is not None]
        if not visuals:
            return None
        if len(visuals) > 1:
            logger.debug("divot lmms-eval model: %d visuals for %s/%s, using the first", len(visuals), task, doc_id)
        return str(visuals[0])

    def _clips(self, video: str | None):
        """Clip tokens (clips, q, d) of a video, tokenized once per path; None stays None."""
        if video is None:
            return None
        if video not in self._tokens:
            self._tokens[video] = self.model.tokens(video, max_clips=self.max_clips)
        return self._tokens[video]

    # -- the harness's API ----------------------------------------------------------------------------------
    def loglikelihood(self, requests) -> list:
        """``(loss, is_greedy)`` per request, in the requests' order; lower loss = more likely (the harness takes
        the argmin). ``loss`` is the mean negative log-likelihood per continuation token. Under lmms-eval 0.7.3
        each pair comes wrapped in its ``GenerationResult`` (``_for_harness``), which its evaluator unwraps.

        Requests that share a video and a context (a multiple-choice question's options) are scored together:
        the prompt runs once and all their continuations in one more pass over its KV cache
        (``score_continuation_ids_batch_greedy``); ``batch_size`` such groups share those two passes."""
        from divot.llm.batch_generation import score_continuation_ids_batch_greedy

        groups: dict[tuple[str | None, str], list[int]] = {}  # (video, context) -> request indices
        for i, req in enumerate(requests):
            context, _, doc_to_visual, doc_id, task, split = req.args
            groups.setdefault((self._video(doc_to_visual, doc_id, task, split), context), []).append(i)
        builder, token_ids = self.model.builder, self.model.builder.ids
        # "greedy" as Divot's text generation decodes: frame placeholders and <vid> </vid> are never text
        suppress = token_ids.placeholders() + [token_ids.vid_start, token_ids.vid_end]
        out: list[tuple[float, bool] | None] = [None] * len(requests)
        keys = list(groups)
        with tqdm(total=len(requests), desc="divot loglikelihood", disable=self.rank != 0) as bar:
            for start in range(0, len(keys), self.batch_size):
                chunk = keys[start : start + self.batch_size]
                prompts = [builder.qa_prompt(self._clips(video), context) for video, context in chunk]
                continuations = [[self._encode(requests[i].args[1]) for i in groups[key]] for key in chunk]
                scored = score_continuation_ids_batch_greedy(self.model.llm, prompts, continuations, suppress,
                                                             normalize=True)
                for key, (mean_ll, greedy) in zip(chunk, scored, strict=True):
                    for i, value, is_greedy in zip(groups[key], mean_ll.tolist(), greedy.tolist(), strict=True):
                        out[i] = (-value, bool(is_greedy))
                    bar.update(len(groups[key]))
        return _for_harness(out)

    def _encode(self, continuation: str) -> list[int]:
        ids = self.model.builder.encode(continuation)
        if not ids:
            raise ValueError(f"continuation {continuation!r} encodes to no tokens")
        return ids

    def generate_until(self, requests) -> list[str]:
        out = []
        for req in tqdm(requests, desc="divot generate", disable=self.rank != 0):
            context, gen_kwargs, doc_to_visual, doc_id, task, split = req.args
            gen_kwargs = dict(gen_kwargs or {})
            until = gen_kwargs.get("until") or []
            until = [until] if isinstance(until, str) else list(until)
            temperature = float(gen_kwargs.get("temperature", 0) or 0)
            greedy = not gen_kwargs.get("do_sample", False) or temperature == 0
            decoding = {"greedy": greedy, "max_new_tokens": int(gen_kwargs.get("max_new_tokens", 32))}
            if not greedy:
                decoding.update(temperature=temperature, top_p=float(gen_kwargs.get("top_p", 1.0)))
            prompt = self.model.builder.qa_prompt(self._clips(self._video(doc_to_visual, doc_id, task, split)),
                                                  context)
            text = self.model.generate_text(prompt, **decoding)
            for stop in until:
                if stop and stop in text:
                    text = text.split(stop, 1)[0]
            out.append(text)
        return out

    def generate_until_multi_round(self, requests) -> list[str]:
        raise NotImplementedError("the divot lmms-eval model does not implement multi-round generation")
