"""The lmms-eval ``divot`` model with constructed requests (objects with ``.args``, as the harness's Instance)."""

from types import SimpleNamespace

import pytest
import torch

from divot.eval.lmms import DivotLMMs

OPTIONS = ["a red circle", "blue", "the square moves up", "green", "yellow"]


@pytest.fixture(scope="module")
def lmm(eval_model, shapes_video):
    model = DivotLMMs(divot=eval_model)
    model.task_dict = {"egoschema_subset_mcppl": {"test": {0: {"video": str(shapes_video)}, 1: {"video": None}}}}
    return model


def _visual(doc):
    return [doc["video"]] if doc["video"] else []


def test_loglikelihood_returns_losses_whose_argmin_is_the_most_likely_option(lmm, eval_model, shapes_video):
    requests = [SimpleNamespace(args=("What is shown?", opt, _visual, 0, "egoschema_subset_mcppl", "test"))
                for opt in OPTIONS]
    out = lmm.loglikelihood(requests)
    assert len(out) == 5 and all(isinstance(v, float) and isinstance(g, bool) for v, g in out)
    losses = torch.tensor([v for v, _ in out])
    # the same numbers as the native ll mode (shared-prefix KV cache), with the sign the harness expects
    prompt = eval_model.builder.qa_prompt(eval_model.tokens(shapes_video), "What is shown?")
    mean_ll = eval_model.llm.score_continuations(prompt, OPTIONS, normalize=True)
    assert torch.allclose(-losses, mean_ll, atol=1e-4)
    assert int(losses.argmin()) == int(mean_ll.argmax())  # lmms-eval picks np.argmin


def test_is_greedy_is_true_for_the_greedy_continuation(lmm, eval_model):
    prompt = eval_model.builder.qa_prompt(None, "Say something.")
    greedy_ids = eval_model.llm.generate_ids(prompt, greedy=True, max_new_tokens=3)
    # the longest greedy prefix whose text encodes back to the same ids (a random model may emit pieces that
    # re-tokenize differently)
    text = next((t for k in (3, 2, 1) if eval_model.builder.encode(t := eval_model.builder.tokenizer.decode(
        greedy_ids[:k])) == greedy_ids[:k]), None)
    if text is None:
        pytest.skip("no greedy prefix survives a decode/encode round trip with this random tokenizer")
    (loss, greedy), = lmm.loglikelihood([SimpleNamespace(args=("Say something.", text, _visual, 1,
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
