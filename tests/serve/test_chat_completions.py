"""``POST /v1/chat/completions`` through the real ``openai`` client: the server's answers are the library's
answers (same prompt, same seed), streamed or not, with history, and under concurrent clients."""

import base64
import json
import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from tests.serve.conftest import NAME, user, video_part

FAST = 6  # max_tokens: short answers keep the tests quick
QUESTION = "What colour is the object?"


def _ask(client, messages, **options):
    return client.chat.completions.create(model=NAME, messages=messages, max_tokens=FAST, **options)


def test_models_lists_the_served_model(client):
    models = client.models.list().data
    assert [m.id for m in models] == [NAME] and models[0].object == "model"
    assert client.models.retrieve(NAME).id == NAME


def test_answer_equals_divot_ask_with_the_same_seed(client, model, video_dir):
    video = video_dir / "clip.mp4"
    response = _ask(client, [user(video_part(video), QUESTION)], seed=3)
    expected = model.ask(video, QUESTION, seed=3, max_new_tokens=FAST)
    choice = response.choices[0]
    assert (choice.message.role, choice.message.content, response.model) == ("assistant", expected, NAME)
    assert response.object == "chat.completion" and response.id.startswith("chatcmpl-")
    # usage counts the real ids: the prompt's positions (video tokens included) and the generated ones
    prompt = model.chat(video).prompt(QUESTION)
    usage = response.usage
    assert usage.prompt_tokens == len(prompt) and 1 <= usage.completion_tokens <= FAST
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert choice.finish_reason == ("length" if usage.completion_tokens == FAST else "stop")


def test_temperature_zero_is_greedy_and_a_data_url_reads_like_the_file(client, model, video_dir):
    video = video_dir / "clip.mp4"
    data_url = "data:video/mp4;base64," + base64.b64encode(video.read_bytes()).decode()
    answer = _ask(client, [user({"type": "video_url", "video_url": {"url": data_url}}, QUESTION)],
                  temperature=0).choices[0].message.content
    assert answer == model.ask(video, QUESTION, greedy=True, max_new_tokens=FAST)


def test_max_tokens_reached_is_finish_reason_length(client):
    response = client.chat.completions.create(model=NAME, messages=[user("Describe a circle.")], max_tokens=1,
                                              seed=0)
    assert (response.choices[0].finish_reason, response.usage.completion_tokens) in (("length", 1), ("stop", 1))
    assert response.choices[0].finish_reason == "length" or response.choices[0].message.content == ""


def test_streamed_pieces_join_to_the_answer(client, model, video_dir):
    video = video_dir / "clip.mp4"
    messages = [user(video_part(video), "Describe the video.")]
    plain = _ask(client, messages, seed=5)
    chunks = list(_ask(client, messages, seed=5, stream=True, stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == plain.choices[0].message.content == model.ask(video, "Describe the video.", seed=5,
                                                                   max_new_tokens=FAST)
    finals = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finals == [plain.choices[0].finish_reason]
    assert not chunks[-1].choices and chunks[-1].usage == plain.usage
    assert {c.id for c in chunks} == {chunks[0].id} and all(c.object == "chat.completion.chunk" for c in chunks)


def test_stream_is_server_sent_events_in_openai_chunk_format(server):
    body = {"model": NAME, "messages": [user("Hello")], "max_tokens": FAST, "seed": 1, "stream": True}
    with httpx.stream("POST", f"{server}/v1/chat/completions", json=body, timeout=60) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in response.iter_lines() if line]
    assert all(line.startswith("data: ") for line in lines) and lines[-1] == "data: [DONE]"
    chunks = [json.loads(line.removeprefix("data: ")) for line in lines[:-1]]
    for chunk in chunks:
        assert set(chunk) == {"id", "object", "created", "model", "choices"}  # no usage unless asked for
        assert chunk["object"] == "chat.completion.chunk" and chunk["model"] == NAME
        (choice,) = chunk["choices"]
        assert set(choice) == {"index", "delta", "finish_reason"} and choice["index"] == 0
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant"}
    assert all(set(c["choices"][0]["delta"]) == {"content"} for c in chunks[1:-1])
    last = chunks[-1]["choices"][0]
    assert last["delta"] == {} and last["finish_reason"] in ("stop", "length")
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks[:-1])


def test_history_is_the_conversation_so_far(client, model, video_dir):
    video = video_dir / "clip.mp4"
    chat = model.chat(video, seed=7, max_new_tokens=FAST)
    first = chat.ask(QUESTION)
    second = chat.ask("And what shape is it?")
    messages = [user(video_part(video), QUESTION), {"role": "assistant", "content": first},
                user("And what shape is it?")]
    assert _ask(client, messages, seed=7).choices[0].message.content == second


def test_a_system_message_is_prepended_to_the_first_question(client, model, video_dir):
    video = video_dir / "clip.mp4"
    messages = [{"role": "system", "content": "Answer in one word."}, user(video_part(video), QUESTION)]
    expected = model.ask(video, f"Answer in one word.\n\n{QUESTION}", seed=2, max_new_tokens=FAST)
    assert _ask(client, messages, seed=2).choices[0].message.content == expected


def test_a_text_only_chat_needs_no_video(client, model):
    expected = model.chat(seed=4, max_new_tokens=FAST).ask("Name a colour.")
    assert _ask(client, [{"role": "user", "content": "Name a colour."}], seed=4).choices[0].message.content == expected


def test_eight_concurrent_clients_each_get_their_own_answer(client, model, video_dir):
    video = video_dir / "clip.mp4"
    jobs = [(seed, f"Question {seed}: what happens in the video?") for seed in range(8)]
    expected = [model.ask(video, question, seed=seed, max_new_tokens=FAST) for seed, question in jobs]
    assert len(set(expected)) > 1  # else a mix-up could go unnoticed

    def call(job):
        seed, question = job
        messages = [user(video_part(video), question)]
        if seed % 2:  # half of them stream
            return "".join(c.choices[0].delta.content or "" for c in _ask(client, messages, seed=seed, stream=True))
        return _ask(client, messages, seed=seed).choices[0].message.content

    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(call, jobs))
    assert answers == expected


def test_a_client_that_goes_away_frees_the_model(server, app, client):
    # 2000 greedy tokens take the tiny model ~12 s on 2 busy cores (its random weights rarely end an answer)
    body = {"model": NAME, "messages": [user("Tell a long story.")], "max_tokens": 2000, "temperature": 0,
            "stream": True}
    with httpx.stream("POST", f"{server}/v1/chat/completions", json=body, timeout=60) as response:
        lines = response.iter_lines()
        assert next(lines).startswith("data: ")  # the answer has begun: the model is busy with it
    start = time.monotonic()  # the connection is closed: the decoding stops at the next token, the lock is freed
    answer = _ask(client, [user("Hello")], seed=0)
    assert answer.choices[0].message.content is not None
    assert time.monotonic() - start < 5, "the next request waited for the abandoned answer"
    assert not app.state.divot.lock.locked()
