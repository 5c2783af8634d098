"""The lmms-eval ``divot`` model with constructed requests (objects with ``.args``, as the harness's Instance)."""

import random
import sys
from dataclasses import dataclass
from types import ModuleType, SimpleNamespace

import pytest
import torch

import divot.llm.batch_generation as batch_generation
from divot.eval.lmms import DivotLMMs, _batch_size, _for_harness

OPTIONS = ["a red circle", "blue", "the square moves up", "green", "yellow"]


@pytest.fixture(scope="module")
def lmm(eval_model, shapes_video):
    model = DivotLMMs(divot=eval_model)
    model.task_dict = {"egoschema_subset_mcppl": {"test": {0: {"video": str(shapes_video)}, 1: {"video": None}}}}
    return model


def _visual(doc):
    return [doc["video"]] if doc["video"] else []


def _loglikelihood(model, requests) -> list[tuple[float, bool]]:
    """The (loss, is_greedy) pairs, as the task gets them: under lmms-eval 0.7.3 each comes in a GenerationResult
    (see test_responses_reach_the_installed_harness_as_tuples)."""
    return [getattr(r, "text", r) for r in model.loglikelihood(requests)]


def test_loglikelihood_returns_losses_whose_argmin_is_the_most_likely_option(lmm, eval_model, shapes_video):
    requests = [SimpleNamespace(args=("What is shown?", opt, _visual, 0, "egoschema_subset_mcppl", "test"))
                for opt in OPTIONS]
    out = _loglikelihood(lmm, requests)
    assert len(out) == 5 and all(isinstance(v, float) and isinstance(g, bool) for v, g in out)
    losses = torch.tensor([v for v, _ in out])
    # the same numbers as the native ll mode (shared-prefix KV cache), with the sign the harness expects
    prompt = eval_model.builder.qa_prompt(eval_model.tokens(shapes_video), "What is shown?")
    mean_ll = eval_model.llm.score_continuations(prompt, OPTIONS, normalize=True)
    assert torch.allclose(-losses, mean_ll, atol=1e-4)
    assert int(losses.argmin()) == int(mean_ll.argmax())  # lmms-eval picks np.argmin


@torch.no_grad()
def _full_pass(model, prompt, continuation: str) -> tuple[float, bool]:
    """The adapter's former path, one full forward pass over prompt + continuation per request: (mean NLL per
    token, every token greedy with placeholders and <vid> </vid> left out)."""
    llm, ids_of = model.llm, model.builder.ids
    cont = model.builder.encode(continuation)
    ids = torch.cat([prompt.input_ids, torch.tensor(cont)])[None]  # (1, s + m)
    cmp = torch.zeros_like(ids, dtype=torch.bool)
    cmp[0, : len(prompt)] = prompt.cmp_mask
    logits = llm.llm(inputs_embeds=llm.embed(ids, cmp, prompt.cmp_clips)).logits[0, len(prompt) - 1 : -1].float()
    target = ids[0, len(prompt):]
    logp = logits.log_softmax(-1).gather(-1, target[:, None])[:, 0]  # (m,)
    logits[:, ids_of.placeholders() + [ids_of.vid_start, ids_of.vid_end]] = float("-inf")
    return float(-logp.mean()), bool((logits.argmax(-1) == target).all())


@pytest.fixture(scope="module")
def two_videos(shapes_video, tmp_path_factory):
    from divot.data.shapes import ClipSpec, ObjectSpec, render_clip
    from divot.data.writers import write_video

    frames = render_clip(ClipSpec((ObjectSpec("square", "blue", "moves up"),)), size=32, rng=None)
    return [str(shapes_video), str(write_video(frames, tmp_path_factory.mktemp("videos") / "blue_square.mp4"))]


@pytest.mark.parametrize("batch_size", [1, 3])
def test_options_sharing_video_and_context_are_scored_together(eval_model, two_videos, batch_size, monkeypatch):
    """Requests of 4 questions (2 videos x 2 contexts, one text-only group), interleaved: one scoring call per
    ``batch_size`` (video, context) groups, the former per-request values in the requests' order."""
    model = DivotLMMs(divot=eval_model, batch_size=batch_size)
    docs = {0: {"video": two_videos[0]}, 1: {"video": two_videos[1]}, 2: {"video": None}}
    model.task_dict = {"t": {"test": docs}}
    questions = [(0, "What is shown?"), (1, "What is shown?"), (0, "Where does it move?"), (2, "Say a colour.")]
    requests = [SimpleNamespace(args=(ctx, opt, _visual, doc, "t", "test"))
                for doc, ctx in questions for opt in OPTIONS]
    random.Random(0).shuffle(requests)
    calls = []
    scorer = batch_generation.score_continuation_ids_batch_greedy
    monkeypatch.setattr(batch_generation, "score_continuation_ids_batch_greedy",
                        lambda llm, prompts, *a, **k: calls.append(len(prompts)) or scorer(llm, prompts, *a, **k))
    out = _loglikelihood(model, requests)
    assert calls == [min(batch_size, 4 - i) for i in range(0, 4, batch_size)]
    for req, (loss, greedy) in zip(requests, out, strict=True):
        context, option, _, doc, _, _ = req.args
        video = docs[doc]["video"]
        prompt = eval_model.builder.qa_prompt(eval_model.tokens(video) if video else None, context)
        want_loss, want_greedy = _full_pass(eval_model, prompt, option)
        assert loss == pytest.approx(want_loss, abs=1e-4) and greedy == want_greedy


def test_batch_size_argument():
    assert _batch_size(1) == 1 and _batch_size("4") == 4 and _batch_size("auto") == 1
    with pytest.raises(ValueError, match="batch_size"):
        _batch_size(0)


def test_is_greedy_is_true_for_the_greedy_continuation(lmm, eval_model):
    prompt = eval_model.builder.qa_prompt(None, "Say something.")
    greedy_ids = eval_model.llm.generate_ids(prompt, greedy=True, max_new_tokens=3)
    # the longest greedy prefix whose text encodes back to the same ids (a random model may emit pieces that
    # re-tokenize differently)
    text = next((t for k in (3, 2, 1) if eval_model.builder.encode(t := eval_model.builder.tokenizer.decode(
        greedy_ids[:k])) == greedy_ids[:k]), None)
    if text is None:
        pytest.skip("no greedy prefix survives a decode/encode round trip with this random tokenizer")
    (loss, greedy), = _loglikelihood(lmm, [SimpleNamespace(args=("Say something.", text, _visual, 1,
                                                                "egoschema_subset_mcppl", "test"))])
    assert greedy and loss > 0


def test_generate_until_cuts_at_the_stop_string(lmm, eval_model, monkeypatch):
    monkeypatch.setattr(eval_model, "generate_text", lambda prompt, **kw: "B. because\nmore text")
    args = ("Q?\nA. x\nB. y", {"until": ["\n"], "max_new_tokens": 8, "temperature": 0}, _visual, 0,
            "egoschema_subset_mcppl", "test")
    assert lmm.generate_until([SimpleNamespace(args=args)]) == ["B. because"]
    with pytest.raises(NotImplementedError):
        lmm.generate_until_multi_round([])


def test_the_entry_point_manifest_names_the_class():
    pytest.importorskip("lmms_eval", reason="lmms-eval is not installed (optional: pip install lmms-eval)")
    from divot.eval.lmms import model_manifest

    manifest = model_manifest()
    assert manifest.model_id == "divot" and manifest.simple_class_path == "divot.eval.lmms.DivotLMMs"


@dataclass
class _GenerationResult:
    text: object
    token_counts: object = None


def _fake_harness(monkeypatch, stringifies: bool):
    """``lmms_eval.api.instance`` with lmms-eval 0.7.3's ``unwrap_generation_output`` (a str or a
    ``GenerationResult``'s text as it is, anything else ``str()``-ed), or one that keeps tuples."""
    def unwrap(output):
        if isinstance(output, _GenerationResult):
            return output.text, output.token_counts
        if isinstance(output, str) or not stringifies:
            return output, None
        return str(output), None

    instance = ModuleType("lmms_eval.api.instance")
    instance.GenerationResult, instance.unwrap_generation_output = _GenerationResult, unwrap
    for name, module in [("lmms_eval", ModuleType("lmms_eval")), ("lmms_eval.api", ModuleType("lmms_eval.api")),
                         ("lmms_eval.api.instance", instance)]:
        monkeypatch.setitem(sys.modules, name, module)
    return unwrap


@pytest.mark.parametrize("stringifies", [True, False])
def test_responses_reach_the_task_as_tuples(monkeypatch, stringifies):
    unwrap = _fake_harness(monkeypatch, stringifies)
    responses = [(0.25, True), (3.5, False)]
    wrapped = _for_harness(responses)
    assert [unwrap(r)[0] for r in wrapped] == responses
    assert (wrapped == responses) is not stringifies  # plain tuples where the harness keeps them


def test_responses_reach_the_installed_harness_as_tuples():
    pytest.importorskip("lmms_eval", reason="lmms-eval is not installed (optional: pip install lmms-eval)")
    from lmms_eval.api.instance import unwrap_generation_output

    responses = [(0.25, True), (3.5, False)]
    assert [unwrap_generation_output(r)[0] for r in _for_harness(responses)] == responses
