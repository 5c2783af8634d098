"""Batched multiple-choice scoring: the options of a question (and several questions) in two forward passes give
the per-option path's log-likelihoods to float tolerance; ``divot eval --batch-size`` gives the same predictions."""

import json

import pytest
import torch

from divot.eval.evaluate import evaluate
from divot.eval.runner import EvalConfig
from divot.llm.batch_generation import score_continuation_ids_reference

OPTIONS = ["red", "a blue square", "a green circle moves left", "it does not move at all", "yellow"]


@pytest.fixture(scope="module")
def llm_and_builder():
    from divot.llm import DivotLLM
    from divot.llm.sequences import SequenceBuilder

    torch.manual_seed(0)
    llm = DivotLLM.from_preset("tiny").eval()
    return llm, SequenceBuilder.from_config(llm.tokenizer, llm.config)


def _prompts(llm, builder):
    q, d = llm.config.num_queries, llm.config.token_dim
    gen = torch.Generator().manual_seed(0)
    return [builder.qa_prompt(torch.randn(n, q, d, generator=gen), text)
            for n, text in ((2, "what colour is the object?"), (1, "what?"), (3, "what shape is it and where does "
                                                                                "it go?"))]


def test_one_question_matches_the_per_option_path(llm_and_builder):
    llm, builder = llm_and_builder
    prompt = _prompts(llm, builder)[0]
    ids = [builder.encode(o) for o in OPTIONS]
    assert len({len(i) for i in ids}) > 2  # options of different lengths: the batch is right-padded
    for normalize in (False, True):
        want = score_continuation_ids_reference(llm, prompt, ids, normalize)
        assert torch.allclose(llm.score_continuation_ids(prompt, ids, normalize), want, atol=1e-4, rtol=0)
        assert torch.allclose(llm.score_continuations(prompt, OPTIONS, normalize), want, atol=1e-4, rtol=0)


def test_several_questions_in_two_forward_passes(llm_and_builder):
    llm, builder = llm_and_builder
    prompts = _prompts(llm, builder)
    assert len({len(p) for p in prompts}) == 3  # different prefix lengths: the prefixes are left-padded
    options = [OPTIONS, OPTIONS[:3], OPTIONS[::-1]]
    calls = []
    hook = llm.llm.register_forward_hook(lambda *_: calls.append(1))
    try:
        got = llm.score_continuations_batch(prompts, options, normalize=True)
    finally:
        hook.remove()
    assert len(calls) == 2
    for prompt, opts, scores in zip(prompts, options, got, strict=True):
        want = score_continuation_ids_reference(llm, prompt, [builder.encode(o) for o in opts], normalize=True)
        assert scores.shape == (len(opts),) and torch.allclose(scores, want, atol=1e-4, rtol=0)


def test_bad_scoring_inputs_are_named(llm_and_builder):
    llm, builder = llm_and_builder
    prompts = _prompts(llm, builder)
    with pytest.raises(ValueError, match="3 prompts but 2"):
        llm.score_continuations_batch(prompts, [OPTIONS, OPTIONS])
    with pytest.raises(ValueError, match="no continuations"):
        llm.score_continuations_batch(prompts[:1], [[]])
    with pytest.raises(ValueError, match="no token ids"):
        llm.score_continuation_ids(prompts[0], [[5], []])


@pytest.mark.parametrize("mode", ["ll", "gen"])
def test_eval_batch_size_gives_the_same_predictions(eval_model, fixtures_dir, clip_frames, tmp_path, mode):
    from tests.eval.conftest import write_videos

    uids = [r["q_uid"] for r in json.loads((fixtures_dir / "egoschema_questions.json").read_text())]
    videos = write_videos(tmp_path / "videos", uids[:-1], clip_frames)  # the last question has no video

    def run(batch_size: int, name: str):
        cfg = EvalConfig(task="egoschema", questions=fixtures_dir / "egoschema_questions.json",
                         answers=fixtures_dir / "egoschema_subset_answers.json", videos=videos, out=tmp_path / name,
                         mode=mode, progress=False, batch_size=batch_size, num_workers=0)
        summary = evaluate(cfg, eval_model)
        lines = (tmp_path / name / "predictions.jsonl").read_text().splitlines()
        return summary, [json.loads(line) for line in lines]

    one, one_records = run(1, "one")
    three, three_records = run(3, "three")  # 7 answered items: batches of 3, 3, 1
    assert [r["id"] for r in three_records] == [r["id"] for r in one_records] == uids
    assert [r["status"] for r in three_records] == [r["status"] for r in one_records]
    assert [r.get("pred") for r in three_records] == [r.get("pred") for r in one_records]
    assert three["accuracy"] == one["accuracy"] and three["missing_videos"] == one["missing_videos"] == 1
    for a, b in zip(one_records, three_records, strict=True):
        if mode == "ll" and "scores" in a:
            assert b["scores"] == pytest.approx(a["scores"], abs=1e-3)
        if mode == "gen" and "response" in a:
            assert b["response"] == a["response"]


def test_batch_size_must_be_positive(fixtures_dir, tmp_path):
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        EvalConfig(task="egoschema", questions=fixtures_dir / "egoschema_questions.json", videos=tmp_path,
                   out=tmp_path, batch_size=0)


def test_the_batch_size_option(fixtures_dir, tmp_path):
    import argparse

    from divot.commands.eval_tasks import add_task_arguments, config_from_args

    parser = argparse.ArgumentParser()
    add_task_arguments(parser, "egoschema")
    base = ["--questions", str(fixtures_dir / "egoschema_questions.json"), "--videos", str(tmp_path),
            "--out", str(tmp_path / "out")]
    assert config_from_args("egoschema", parser.parse_args(base + ["--batch-size", "4"])).batch_size == 4
    assert config_from_args("egoschema", parser.parse_args(base)).batch_size == 1


def test_open_ended_eval_batch_size_gives_the_same_responses(eval_model, fixtures_dir, clip_frames, tmp_path):
    from tests.eval.conftest import write_videos

    names = {r["video_name"] for r in json.loads((fixtures_dir / "msvd_test_q.json").read_text())}
    folder = write_videos(tmp_path / "videos", sorted(names), clip_frames, ext=".avi")

    def run(batch_size: int, name: str):
        cfg = EvalConfig(task="msvd-qa", questions=fixtures_dir / "msvd_test_q.json",
                         answers=fixtures_dir / "msvd_test_a.json", videos=folder, out=tmp_path / name,
                         progress=False, batch_size=batch_size, num_workers=0, max_new_tokens=6)
        summary = evaluate(cfg, eval_model)
        lines = (tmp_path / name / "predictions.jsonl").read_text().splitlines()
        return summary, [json.loads(line) for line in lines]

    one, one_records = run(1, "one")
    four, four_records = run(4, "four")  # 6 questions: batches of 4 and 2
    assert [r["id"] for r in four_records] == [r["id"] for r in one_records]
    assert [r["response"] for r in four_records] == [r["response"] for r in one_records]
    assert four["metrics"] == one["metrics"]
