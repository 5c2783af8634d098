"""Bad requests get OpenAI-style errors with 4xx codes (``openai.BadRequestError`` ...), never a crash: the
server reads only allowed files, refuses remote URLs, long or broken videos, bad decoding values, malformed
bodies and unknown models, and keeps serving afterwards."""

import base64

import httpx
import openai
import pytest

from tests.serve.conftest import NAME, user, video_part


def _video(url: str) -> dict:
    return {"type": "video_url", "video_url": {"url": url}}


def _error(exc_info, status: int, code: str | None):
    error = exc_info.value
    assert error.status_code == status
    body = error.response.json()["error"]
    assert set(body) == {"message", "type", "param", "code"} and body["message"]
    assert body["type"] in ("invalid_request_error", "not_found_error")
    if code is not None:
        assert body["code"] == code, body
    return body


def _send(client, messages, **options):
    return client.chat.completions.create(model=options.pop("model", NAME), messages=messages, max_tokens=4,
                                          **options)


VIDEO_CASES = {  # name -> (url given the allowed folder and an outside video, status, code)
    "file outside the allowed folders": (lambda d, outside: outside.as_uri(), 403, "file_access_denied"),
    "symlink leading out of the allowed folder": (lambda d, outside: (d / "link.mp4").as_uri(), 403,
                                                  "file_access_denied"),
    "dot-dot path out of the allowed folder": (lambda d, outside: f"file://{d}/../{outside.parent.name}/"
                                               f"{outside.name}", 403, "file_access_denied"),
    "missing file": (lambda d, outside: (d / "missing.mp4").as_uri(), 400, "video_not_found"),
    "unreadable video": (lambda d, outside: (d / "broken.mp4").as_uri(), 400, "invalid_video"),
    "too many clips": (lambda d, outside: (d / "long.mp4").as_uri(), 400, "video_too_long"),
    "remote url": (lambda d, outside: "https://example.com/clip.mp4", 400, "remote_url_refused"),
    "bad base64": (lambda d, outside: "data:video/mp4;base64,@@@not base64@@@", 400, "invalid_video_url"),
    "data url of no video": (lambda d, outside: "data:video/mp4;base64," + base64.b64encode(b"junk").decode(),
                             400, "invalid_video"),
    "not a video media type": (lambda d, outside: "data:text/plain;base64,aGk=", 400, "invalid_video_url"),
    "plain path": (lambda d, outside: str(d / "clip.mp4"), 400, "invalid_video_url"),
}


@pytest.mark.parametrize("case", VIDEO_CASES)
def test_video_urls_the_server_refuses(client, video_dir, shapes_video, case):
    url, status, code = VIDEO_CASES[case]
    with pytest.raises(openai.APIStatusError) as exc_info:
        _send(client, [user(_video(url(video_dir, shapes_video)), "What colour?")])
    body = _error(exc_info, status, code)
    assert body["param"] == "messages.0.content.0"
    if "symlink" in case:  # where the link leads is not told
        assert str(shapes_video) not in body["message"]


REQUEST_CASES = {  # name -> (messages, options, status, code, param)
    "n above one": ([user("Hi")], {"n": 2}, 400, "invalid_body", "n"),
    "negative temperature": ([user("Hi")], {"temperature": -0.5}, 400, "invalid_body", "temperature"),
    "top_p of zero": ([user("Hi")], {"top_p": 0}, 400, "invalid_body", "top_p"),
    "max_tokens of zero": ([user("Hi")], {"max_tokens": 0}, 400, "invalid_body", "max_tokens"),
    "max_tokens beyond the context": ([user("Hi")], {"max_tokens": 10**6}, 400, "context_length_exceeded",
                                      "max_tokens"),
    "unsupported parameter": ([user("Hi")], {"stop": ["\n"]}, 400, "invalid_body", "stop"),
    "unknown model": ([user("Hi")], {"model": "gpt-4o"}, 404, "model_not_found", "model"),
    "last message from the assistant": ([user("Hi"), {"role": "assistant", "content": "Hello"}], {}, 400,
                                        "invalid_message", "messages.1"),
    "two user messages in a row": ([user("Hi"), user("Again")], {}, 400, "invalid_message", "messages.1"),
    "a tool message": ([{"role": "tool", "content": "x", "tool_call_id": "1"}], {}, 400, "invalid_body", None),
    "an image part": ([user({"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}}, "Hi")], {},
                      400, "invalid_content_part", "messages.0.content.0"),
    "no text": ([user(_video("data:video/mp4;base64,AA=="))], {}, 400, "invalid_message", "messages.0.content"),
    "no messages": ([], {}, 400, "invalid_body", "messages"),
}


@pytest.mark.parametrize("case", REQUEST_CASES)
def test_bad_requests_are_openai_errors(client, case):
    messages, options, status, code, param = REQUEST_CASES[case]
    options = {"model": NAME, "max_tokens": 4, **options}
    with pytest.raises(openai.APIStatusError) as exc_info:
        client.chat.completions.create(messages=messages, **options)
    body = _error(exc_info, status, code)
    if param is not None:
        assert body["param"] == param, body


def test_error_classes_are_the_clients(client, video_dir, shapes_video):
    with pytest.raises(openai.BadRequestError):
        _send(client, [user("Hi")], n=3)
    with pytest.raises(openai.NotFoundError):
        _send(client, [user("Hi")], model="nope")
    with pytest.raises(openai.PermissionDeniedError):
        _send(client, [user(video_part(shapes_video), "Hi")])


def test_two_videos_are_refused(client, video_dir):
    clip = video_part(video_dir / "clip.mp4")
    with pytest.raises(openai.BadRequestError) as exc_info:
        _send(client, [user(clip, "Hi"), {"role": "assistant", "content": "Hello"}, user(clip, "Again")])
    assert _error(exc_info, 400, "too_many_videos")["param"] == "messages.2.content.0"


@pytest.mark.parametrize("raw", [b"{not json", b"[]", b'{"model": "tiny"}', b'{"model": "tiny", "messages": 3}'])
def test_malformed_bodies_are_400_not_422(server, raw):
    response = httpx.post(f"{server}/v1/chat/completions", content=raw,
                          headers={"content-type": "application/json"}, timeout=30)
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_unknown_routes_answer_in_the_same_format(server):
    response = httpx.get(f"{server}/v1/nothing", timeout=30)
    assert response.status_code == 404 and response.json()["error"]["message"]
    response = httpx.get(f"{server}/v1/chat/completions", timeout=30)
    assert response.status_code == 405 and response.json()["error"]["message"]


def test_the_server_keeps_serving_after_bad_requests(client, server):
    for _ in range(3):
        with pytest.raises(openai.BadRequestError):
            _send(client, [user(_video("data:video/mp4;base64,AAAA"), "Hi")])
    assert httpx.get(f"{server}/health", timeout=30).json()["status"] == "ok"
    assert _send(client, [user("Hi")], seed=0).choices[0].message.role == "assistant"
