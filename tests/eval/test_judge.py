"""The Video-ChatGPT judge: reply parsing, and the OpenAI-compatible HTTP judge against a local stub server."""

import json

import pytest

from divot.eval.judge import HTTPJudge, judge_messages, make_judge, parse_judge_reply
from tests.openai_stub import OpenAIStub


@pytest.mark.parametrize("reply, correct, score, parsed", [
    ("{'pred': 'yes', 'score': 4}", True, 4.0, True),
    ("Sure! {'pred': 'no', 'score': 1.5} hope this helps", False, 1.5, True),
    ('{"pred": "YES", "score": 9}', True, 5.0, True),  # clamped to 0..5
    ("yes, 3", True, 3.0, True),
    ("I cannot evaluate this.", False, 0.0, False),
])
def test_parse_judge_reply(reply, correct, score, parsed):
    r = parse_judge_reply(reply)
    assert (r.correct, r.score, r.parsed, r.raw) == (correct, score, parsed, reply)


def test_the_prompt_is_video_chatgpts():
    system, user = judge_messages("what is he doing?", "run", "running fast")
    assert system["role"] == "system" and "intelligent chatbot" in system["content"]
    assert "Question: what is he doing?\nCorrect Answer: run\nPredicted Answer: running fast" in user["content"]
    assert "{'pred': 'yes', 'score': 4.8}" in user["content"]


def StubJudgeServer(status: int = 200, garble: str | None = None) -> OpenAIStub:  # noqa: N802 - used as a class
    """An OpenAI-compatible /v1/chat/completions: "yes" when the predicted answer contains the correct one;
    a reply no parser reads when the question contains ``garble``."""

    def reply(body: dict) -> str:
        user = body["messages"][1]["content"]
        answer = user.split("Correct Answer: ")[1].split("\n")[0]
        pred = user.split("Predicted Answer: ")[1].split("\n")[0]
        if garble and garble in user.split("Question: ")[1].split("\n")[0]:
            return "I cannot evaluate this."
        return "{'pred': 'yes', 'score': 5}" if answer in pred else "{'pred': 'no', 'score': 1}"

    return OpenAIStub(reply, status=status)


def test_http_judge_against_a_local_stub(monkeypatch):
    monkeypatch.setenv("STUB_JUDGE_KEY", "secret-key")
    with StubJudgeServer() as server:
        judge = make_judge(server.url, "gpt-stub", api_key_env="STUB_JUDGE_KEY")
        assert isinstance(judge, HTTPJudge)
        yes, no = judge("what is it?", "dog", "a small dog"), judge("what is it?", "dog", "a cat")
    assert (yes.correct, yes.score) == (True, 5.0) and (no.correct, no.score) == (False, 1.0)
    first = server.requests[0]
    assert first["path"] == "/v1/chat/completions" and first["auth"] == "Bearer secret-key"
    assert first["body"]["model"] == "gpt-stub" and first["body"]["temperature"] == 0.0
    ident = judge.identity
    assert ident["url"] == server.url + "/chat/completions" and ident["model"] == "gpt-stub"
    assert ident["served_model"] == ["gpt-stub-2024-08-06"] and ident["system_fingerprint"] == ["fp_stub"]
    assert "secret-key" not in json.dumps(ident)


def test_http_judge_errors_are_clear():
    with StubJudgeServer(status=500) as server:
        with pytest.raises(RuntimeError, match="HTTP 500"):
            HTTPJudge(server.url, "m", retries=0)("q", "a", "p")
    with pytest.raises(ValueError, match="model name"):
        HTTPJudge("http://127.0.0.1:9/v1", "")
    with pytest.raises(FileNotFoundError, match="neither an http"):
        make_judge("no/such/judge")


def test_hf_judge_from_a_local_directory(divot_model_dir, eval_model, fixtures_dir, clip_frames, tmp_path):
    """The tiny model's plain HF LLM as a judge: gibberish replies, counted as unparseable, identity recorded."""
    from divot.eval.evaluate import evaluate
    from divot.eval.judge import HFJudge
    from divot.eval.runner import EvalConfig
    from tests.eval.conftest import write_videos

    judge = make_judge(str(divot_model_dir / "llm" / "llm"))
    assert isinstance(judge, HFJudge)
    judge.max_new_tokens = 4
    questions = fixtures_dir / "activitynet_qa.json"
    names = [f"v_{r['video_name']}" for r in json.loads(questions.read_text())]
    videos = write_videos(tmp_path / "videos", names, clip_frames)
    s = evaluate(EvalConfig(task="activitynet-qa", questions=questions, videos=videos, out=tmp_path / "out",
                            progress=False, judge=str(divot_model_dir / "llm" / "llm")), eval_model, judge)
    records = [json.loads(line) for line in (tmp_path / "out" / "predictions.jsonl").read_text().splitlines()]
    assert len(records) == len(names) == 5 and all(r["status"] == "answered" for r in records)
    for r in records:  # random weights: no reply reads as a verdict, and each is scored "no", 0
        assert not parse_judge_reply(r["judge_raw"]).parsed, r["judge_raw"]
        assert (r["judge"], r["judge_score"], r["judge_parsed"]) == (False, 0.0, False)
    assert s["counts"]["judged"] == 5 and s["counts"]["judge_unparseable"] == 5
    assert s["accuracy_metric"] == "judge" and s["accuracy"] == 0.0
    ident = judge.identity
    assert ident["kind"] == "huggingface-local" and ident["path"].endswith("llm") and ident["model_type"]
    assert s["judge"] == ident
