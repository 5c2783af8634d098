"""Benchmark tasks end to end with the tiny random model: loaders on the real annotation files, prompts, both
answer modes, metrics, submission files, resume after a kill, missing videos, the token cache, the CLIs.
Random weights answer at random, so the tests check accounting and files; learning is tested by
``test_egoschema_shapes_world`` on the trained bundled model."""

import csv
import json
from pathlib import Path

import pytest

from divot.eval.evaluate import evaluate
from divot.eval.runner import EvalConfig, PredictionLog
from divot.eval.tasks import activitynet_qa, egoschema, msvd_qa, nextqa
from tests.eval.conftest import write_videos
from tests.eval.test_judge import StubJudgeServer


def _ego_cfg(fx, videos, out, **kw):
    return EvalConfig(task="egoschema", questions=fx / "egoschema_questions.json",
                      answers=fx / "egoschema_subset_answers.json", videos=videos, out=out, progress=False, **kw)


@pytest.fixture(scope="module")
def ego_videos(tmp_path_factory, fixtures_dir, clip_frames):
    """Videos for the EgoSchema fixture: all but the last question; the second is a corrupt file."""
    uids = [r["q_uid"] for r in json.loads((fixtures_dir / "egoschema_questions.json").read_text())]
    folder = write_videos(tmp_path_factory.mktemp("ego") / "videos", uids[:-1], clip_frames)
    (folder / f"{uids[1]}.mp4").write_bytes(b"not a video")
    return folder, uids


# -- loaders ------------------------------------------------------------------------------------------------
def test_loaders_on_the_fixture_files(fixtures_dir, tmp_path):
    fx = fixtures_dir
    ego = egoschema.load_items(_ego_cfg(fx, tmp_path, tmp_path))
    assert len(ego) == 8 and sum(it.answer is not None for it in ego) == 6
    assert all(len(it.options) == 5 and it.video is None for it in ego)
    q = EvalConfig(task="msvd-qa", questions=fx / "msvd_test_q.json", answers=fx / "msvd_test_a.json",
                   videos=tmp_path, out=tmp_path)
    one = EvalConfig(task="msvd-qa", questions=fx / "msvd_qa.json", videos=tmp_path, out=tmp_path)
    a, b = msvd_qa.load_items(q), msvd_qa.load_items(one)
    assert [(x.video_id, x.question, x.answer) for x in a] == [(x.video_id, x.question, x.answer) for x in b]
    assert a[0].item_id == "v_jfrrO5K_vKM_55_65_0" and a[0].meta == {"type": 3}
    anet = activitynet_qa.load_items(EvalConfig(task="activitynet-qa", questions=fx / "activitynet_qa.json",
                                                videos=tmp_path, out=tmp_path))
    assert anet[0].video_id == "v_1QIUV7WYKXg" and anet[0].answer == "no"
    nq = nextqa.load_items(EvalConfig(task="nextqa", questions=fx / "nextqa_mc_val.csv", videos=tmp_path,
                                      out=tmp_path))
    assert nq[0].options[0] == "roll the handle" and nq[0].answer == 0 and nq[0].meta["question_type"] == "CH"


def test_loaders_on_the_real_annotation_files(real_benchmarks, tmp_path):
    r = real_benchmarks
    ego = egoschema.load_items(EvalConfig(task="egoschema", questions=r / "egoschema/questions_full5031_reconstructed.json",
                                          answers=r / "egoschema/subset_answers.json", videos=tmp_path, out=tmp_path))
    assert len(ego) == 5031 and sum(it.answer is not None for it in ego) == 500
    answers = [it.answer for it in ego if it.answer is not None]
    assert {k: answers.count(k) for k in range(5)} == {0: 101, 1: 108, 2: 91, 3: 83, 4: 117}  # the README's
    a = msvd_qa.load_items(EvalConfig(task="msvd-qa", questions=r / "msvd/test_q.json",
                                      answers=r / "msvd/test_a.json", videos=tmp_path, out=tmp_path))
    b = msvd_qa.load_items(EvalConfig(task="msvd-qa", questions=r / "msvd/chatunivi_msvd_qa.json",
                                      videos=tmp_path, out=tmp_path))
    assert len(a) == len(b) == 13157
    assert [(x.video_id, x.question, x.answer) for x in a] == [(x.video_id, x.question, x.answer) for x in b]
    assert len(activitynet_qa.load_items(EvalConfig(task="activitynet-qa", videos=tmp_path, out=tmp_path,
               questions=r / "activitynet/chatunivi_activitynet_qa.json"))) == 8000
    nq = nextqa.load_items(EvalConfig(task="nextqa", questions=r / "nextqa/igvlm_NExT_QA_mc_val4996.csv",
                                      videos=tmp_path, out=tmp_path))
    assert len(nq) == 4996 and {it.meta["question_family"] for it in nq} == {"C", "T", "D"}


def test_bad_inputs_are_named(fixtures_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match="questions file"):
        EvalConfig(task="egoschema", questions=tmp_path / "none.json", videos=tmp_path, out=tmp_path)
    with pytest.raises(ValueError, match="--videos DIR"):
        EvalConfig(task="egoschema", questions=fixtures_dir / "egoschema_questions.json", out=tmp_path)
    bad = tmp_path / "q.json"
    bad.write_text(json.dumps([{"q_uid": "x", "question": "?"}]))
    with pytest.raises(ValueError, match=r"lacks \['option 0'"):
        egoschema.load_items(EvalConfig(task="egoschema", questions=bad, videos=tmp_path, out=tmp_path))


# -- EgoSchema ----------------------------------------------------------------------------------------------
def test_egoschema_ll_scores_submission_and_missing_videos(eval_model, fixtures_dir, ego_videos, tmp_path):
    folder, uids = ego_videos
    s = evaluate(_ego_cfg(fixtures_dir, folder, tmp_path / "ll"), eval_model)
    assert s["counts"] == {"total": 8, "answered": 6, "scored": 5, "missing_videos": 2, "unparseable": 0}
    reasons = {m["id"]: m["reason"] for m in s["missing_video_list"]}
    assert reasons[uids[-1]] == "no video file" and reasons[uids[1]].startswith("unreadable")
    assert s["prompt"]["template"] == "{question}" and s["decoding"]["kv_cache_shared_prefix"]
    assert s["model"]["tokenizer_id"] and s["accuracy_bootstrap"]["level"] == 0.95
    records = [json.loads(line) for line in (tmp_path / "ll" / "predictions.jsonl").read_text().splitlines()]
    assert len(records) == 8 and all(r["status"] in ("answered", "missing_video") for r in records)
    answered = [r for r in records if r["status"] == "answered"]
    assert all(r["pred"] == max(range(5), key=lambda i: r["scores"][i]) for r in answered)
    # The accuracy is the predictions file's: correct over the answered questions with a ground truth;
    # beside it, the same hits over every question with a ground truth (a missing video counts as wrong).
    truth = json.loads((fixtures_dir / "egoschema_subset_answers.json").read_text())
    scored = [r for r in answered if r["id"] in truth]
    correct = sum(r["pred"] == truth[r["id"]] for r in scored)
    assert len(scored) == 5 and s["accuracy"] == correct / len(scored)
    assert s["accuracy_counting_missing_as_wrong"] == correct / sum(u in truth for u in uids)
    assert s["accuracy_ci95"][0] <= s["accuracy"] <= s["accuracy_ci95"][1]
    assert json.loads((tmp_path / "ll" / "summary.json").read_text())["accuracy"] == s["accuracy"]
    submission = json.loads((tmp_path / "ll" / "submission.json").read_text())
    assert submission == {r["id"]: r["pred"] for r in answered}  # full set, incl. the question without answer
    with open(tmp_path / "ll" / "submission.csv") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["q_uid", "answer"] and {u: int(a) for u, a in rows[1:]} == submission


def test_egoschema_gen_parses_letters_and_counts_unparseable(eval_model, fixtures_dir, ego_videos, tmp_path,
                                                              monkeypatch):
    folder, uids = ego_videos
    answers = json.loads((fixtures_dir / "egoschema_subset_answers.json").read_text())
    letters = "ABCDE"
    replies = iter([f"({letters[answers[uids[0]]]})", "I don't know", f"The answer is {letters[answers[uids[3]]]}.",
                    "Z", "A", "B"])
    prompts = []

    def fake_generate(prompt, seed=None, **decoding):
        prompts.append(eval_model.tokenizer and eval_model.builder.tokenizer.decode(prompt.input_ids))
        return next(replies)

    monkeypatch.setattr(eval_model, "generate_text", fake_generate)
    s = evaluate(_ego_cfg(fixtures_dir, folder, tmp_path / "gen", mode="gen"), eval_model)
    assert all(p.rstrip().endswith("Answer with the option's letter from the given choices directly. [/INST]")
               for p in prompts)
    assert "\nA. " in prompts[0] and "\nE. " in prompts[0]
    assert s["counts"]["unparseable"] == 2 and s["unparseable_ids"] == [uids[2], uids[4]]
    scored = [u for u in uids[:6] if u != uids[1]]  # uids[1]'s video is corrupt; uids[6:] have no answer
    preds = {uids[0]: answers[uids[0]], uids[2]: None, uids[3]: answers[uids[3]], uids[4]: None, uids[5]: 0}
    correct = sum(preds[u] == answers[u] for u in scored)
    assert s["accuracy"] == correct / len(scored)  # the unparseable answers count as wrong
    assert s["counts"] == {"total": 8, "answered": 6, "scored": 5, "missing_videos": 2, "unparseable": 2}
    lines = (tmp_path / "gen" / "predictions.jsonl").read_text().splitlines()
    assert {r["id"]: r["pred"] for r in map(json.loads, lines) if r["id"] in preds} == preds
    assert json.loads((tmp_path / "gen" / "submission.json").read_text())[uids[2]] == -1


def test_resume_after_a_kill_skips_finished_items(eval_model, fixtures_dir, ego_videos, tmp_path, monkeypatch):
    folder, _ = ego_videos
    out = tmp_path / "resume"
    evaluate(_ego_cfg(fixtures_dir, folder, out, limit=3), eval_model)
    log = out / "predictions.jsonl"
    assert len(log.read_text().splitlines()) == 3
    with log.open("a") as f:
        f.write('{"id": "00f93e1e-cf4e-4835-88b4-4ad68216e86f", "status": "ans')  # a kill mid-line
    calls = []
    score = eval_model.llm.score_continuations
    monkeypatch.setattr(eval_model.llm, "score_continuations", lambda *a, **k: calls.append(1) or score(*a, **k))
    s = evaluate(_ego_cfg(fixtures_dir, folder, out), eval_model)
    assert len(calls) == 6 - 2  # 6 answerable questions, 2 of them done before the kill (one was missing)
    records = [json.loads(line) for line in log.read_text().splitlines()]  # every line parses again
    assert len({r["id"] for r in records}) == 8 and s["counts"]["answered"] == 6
    assert len(PredictionLog(out).records) == 8
    with pytest.raises(ValueError, match="other settings"):
        evaluate(_ego_cfg(fixtures_dir, folder, out, mode="gen"), eval_model)


def test_tokens_cache_gives_the_same_predictions(eval_model, fixtures_dir, ego_videos, tmp_path):
    from divot.data.token_cache import build_token_cache

    folder, uids = ego_videos
    build_token_cache(eval_model.tokenizer, folder, tmp_path / "cache", progress=False)
    cached = evaluate(_ego_cfg(fixtures_dir, None, tmp_path / "c", tokens_cache=tmp_path / "cache"), eval_model)
    decoded = evaluate(_ego_cfg(fixtures_dir, folder, tmp_path / "d"), eval_model)
    read = {o: {r["id"]: r for r in PredictionLog(tmp_path / o).records.values()} for o in ("c", "d")}
    for uid in uids:
        a, b = read["c"][uid], read["d"][uid]
        assert a["status"] == b["status"]
        if a["status"] == "answered":
            assert a["scores"] == pytest.approx(b["scores"], abs=1e-3)
    assert cached["missing_videos"] == decoded["missing_videos"] == 2
    assert {m["reason"] for m in cached["missing_video_list"]} >= {"not in token cache"}


def test_entry_points_share_the_options(divot_model_dir, fixtures_dir, ego_videos, tmp_path):
    from divot.cli import main as divot_main
    from eval.egoschema import main

    folder, _ = ego_videos
    args = ["--questions", str(fixtures_dir / "egoschema_questions.json"),
            "--answers", str(fixtures_dir / "egoschema_subset_answers.json"), "--videos", str(folder),
            "--model", str(divot_model_dir), "--device", "cpu", "--limit", "2", "--no-progress"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    assert divot_main(["eval", "egoschema", *args, "--out", str(tmp_path / "b")]) == 0
    a, b = (json.loads((tmp_path / o / "summary.json").read_text()) for o in ("a", "b"))
    assert a["counts"] == b["counts"] and a["accuracy"] == b["accuracy"]
    assert main([*args, "--out", str(tmp_path / "a"), "--mode", "gen"]) == 2  # other settings: an error


# -- NExT-QA ------------------------------------------------------------------------------------------------
def test_nextqa_reports_accuracy_per_question_type(eval_model, fixtures_dir, clip_frames, tmp_path):
    with open(fixtures_dir / "nextqa_mc_val.csv") as f:
        names = [r["video_name"] for r in csv.DictReader(f)]
    folder = write_videos(tmp_path / "videos", names, clip_frames)
    s = evaluate(EvalConfig(task="nextqa", questions=fixtures_dir / "nextqa_mc_val.csv", videos=folder,
                            out=tmp_path / "out", progress=False), eval_model)
    assert s["counts"] == {"total": 6, "answered": 6, "scored": 6, "missing_videos": 0, "unparseable": 0}
    # Every accuracy recomputed from the predictions file and the csv's answers and question types.
    with open(fixtures_dir / "nextqa_mc_val.csv") as f:
        rows = {r["question_id"]: r for r in csv.DictReader(f)}
    preds = [json.loads(line) for line in (tmp_path / "out" / "predictions.jsonl").read_text().splitlines()]
    hits = {r["id"]: r["pred"] == int(rows[r["id"]]["answer_number"]) for r in preds}
    assert len(hits) == 6 and s["accuracy"] == sum(hits.values()) / 6

    def by(key):
        groups = {}
        for qid, hit in hits.items():
            groups.setdefault(key(rows[qid]["question_type"]), []).append(hit)
        return {g: sum(v) / len(v) for g, v in groups.items()}

    assert s["accuracy_by_question_type"] == by(lambda t: t) and set(by(lambda t: t)) == {"CH", "CW", "TN"}
    assert s["accuracy_by_question_family"] == by(lambda t: t[0])


# -- open-ended ---------------------------------------------------------------------------------------------
def _echo_answers(monkeypatch, model, items, fmt):
    """Make the model answer ``fmt.format(answer)`` (the ground truth, un-stemmed) for each question."""
    by_question = {it.question: it.answer for it in items}

    def fake_generate(prompt, seed=None, **decoding):
        text = model.builder.tokenizer.decode(prompt.input_ids)
        question = next(q for q in by_question if q in text)
        return fmt.format(by_question[question])

    monkeypatch.setattr(model, "generate_text", fake_generate)


def test_msvd_open_ended_metrics_in_both_formats(eval_model, fixtures_dir, clip_frames, tmp_path, monkeypatch):
    fx = fixtures_dir
    names = {r["video_name"] for r in json.loads((fx / "msvd_test_q.json").read_text())}
    folder = write_videos(tmp_path / "videos", sorted(names), clip_frames, ext=".avi")
    cfg = EvalConfig(task="msvd-qa", questions=fx / "msvd_test_q.json", answers=fx / "msvd_test_a.json",
                     videos=folder, out=tmp_path / "a", progress=False)
    _echo_answers(monkeypatch, eval_model, msvd_qa.load_items(cfg), "The {}s.")  # "someone" -> "The someones."
    s = evaluate(cfg, eval_model)
    assert s["accuracy_metric"] == "exact" and s["accuracy"] == 1.0
    assert s["metrics"]["contains"]["value"] == 1.0 and s["counts"]["answered"] == 6
    _echo_answers(monkeypatch, eval_model, msvd_qa.load_items(cfg), "I think it is {} here")
    s = evaluate(EvalConfig(task="msvd-qa", questions=fx / "msvd_qa.json", videos=folder, out=tmp_path / "b",
                            progress=False), eval_model)
    assert s["metrics"]["exact"]["value"] == 0.0 and s["metrics"]["contains"]["value"] == 1.0


def test_activitynet_with_the_http_judge(eval_model, fixtures_dir, clip_frames, tmp_path, monkeypatch):
    fx = fixtures_dir
    names = [r["video_name"] for r in json.loads((fx / "activitynet_qa.json").read_text())]
    folder = write_videos(tmp_path / "videos", [f"v_{n}" for n in names[:-1]], clip_frames)
    from divot.eval.judge import make_judge

    # The judge says yes to every echoed answer, but its reply about the athlete is unreadable.
    with StubJudgeServer(garble="athlete") as server:
        cfg = EvalConfig(task="activitynet-qa", questions=fx / "activitynet_qa.json", videos=folder,
                         out=tmp_path / "out", progress=False, judge=server.url, judge_model="gpt-stub")
        _echo_answers(monkeypatch, eval_model, activitynet_qa.load_items(cfg), "well, {}")
        s = evaluate(cfg, eval_model, make_judge(server.url, "gpt-stub"))
    records = [json.loads(line) for line in (tmp_path / "out" / "predictions.jsonl").read_text().splitlines()]
    judged = [r for r in records if r["status"] == "answered"]
    assert len(judged) == 4
    assert [r["judge_parsed"] for r in judged] == ["athlete" not in r["question"] for r in judged]
    assert s["counts"] == {"total": 5, "answered": 4, "missing_videos": 1, "judged": 4,
                           "judge_unparseable": 1, "empty_answers": 0}
    # An unreadable verdict is a "no" scored 0: 3 of 4 correct, scores 0, 5, 5, 5.
    assert s["accuracy_metric"] == "judge" and s["accuracy"] == sum(r["judge"] for r in judged) / 4 == 0.75
    assert s["metrics"]["judge_score"]["value"] == 3.75
    assert s["missing_videos"] == 1 and s["missing_video_list"][0]["video_id"] == f"v_{names[-1]}"
    assert s["judge"]["model"] == "gpt-stub" and s["judge"]["served_model"] == ["gpt-stub-2024-08-06"]
    assert len(server.requests) == 4


def test_the_real_egoschema_file_with_generated_videos(eval_model, real_benchmarks, clip_frames, tmp_path):
    """A few dozen real subset questions, each with a tiny generated clip named <q_uid>.mp4."""
    r = real_benchmarks / "egoschema"
    answers = json.loads((r / "subset_answers.json").read_text())
    questions = [q for q in json.loads((r / "questions_full5031_reconstructed.json").read_text())
                 if q["q_uid"] in answers][:24]
    qfile = tmp_path / "questions.json"
    qfile.write_text(json.dumps(questions))
    folder = write_videos(tmp_path / "videos", [q["q_uid"] for q in questions[:-4]], clip_frames)
    s = evaluate(EvalConfig(task="egoschema", questions=qfile, answers=r / "subset_answers.json", videos=folder,
                            out=tmp_path / "out", progress=False), eval_model)
    assert s["counts"]["answered"] == 20 and s["missing_videos"] == 4 and s["counts"]["scored"] == 20
    assert len(json.loads((tmp_path / "out" / "submission.json").read_text())) == 20


@pytest.mark.slow
def test_egoschema_shapes_world(tmp_path):
    """The trained bundled model answers shapes-world questions in EgoSchema format far above chance (0.2)."""
    from divot.chat import Divot, available_bundled_models
    from divot.data.shapes.generate import generate_dataset

    if "shapes-tiny" not in available_bundled_models():
        pytest.skip("the bundled trained model divot/assets/shapes-tiny is not installed (it is trained "
                    "separately); this test needs it")
    model = Divot.from_pretrained("shapes-tiny", device="cpu")
    data = generate_dataset(tmp_path / "data", num=40, seed=123, held_out=False, num_stories=0, progress=False)
    s = evaluate(EvalConfig(task="egoschema", questions=Path(data["egoschema_questions"]),
                            answers=Path(data["egoschema_answers"]), videos=Path(data["video_dir"]),
                            out=tmp_path / "out", progress=False), model)
    assert s["counts"]["answered"] == 40 and s["accuracy"] >= 0.5, s["accuracy"]
