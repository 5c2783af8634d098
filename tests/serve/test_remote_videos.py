"""``--allow-remote-urls``: http(s) video URLs are downloaded (from a local HTTP server here), within the size
limit; without the option they are refused (test_errors)."""

import functools
import http.server
import threading

import pytest
from fastapi.testclient import TestClient

from tests.serve.conftest import user


@pytest.fixture(scope="module")
def video_site(video_dir):
    """``http://127.0.0.1:PORT/`` serving the allowed folder's files."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(video_dir))
    handler.log_message = lambda *args: None
    site = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=site.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{site.server_address[1]}"
    site.shutdown()
    site.server_close()


def _app(model, **options):
    from divot.serve import create_app

    return TestClient(create_app(model, model_name="m", allow_remote_urls=True, **options))


def _request(url: str) -> dict:
    return {"model": "m", "seed": 1, "max_tokens": 4,
            "messages": [user({"type": "video_url", "video_url": {"url": url}}, "What colour?")]}


def test_a_remote_video_is_downloaded_and_answered(model, video_site, video_dir):
    with _app(model) as http:
        response = http.post("/v1/chat/completions", json=_request(f"{video_site}/clip.mp4"))
    assert response.status_code == 200, response.text
    expected = model.ask(video_dir / "clip.mp4", "What colour?", seed=1, max_new_tokens=4)
    assert response.json()["choices"][0]["message"]["content"] == expected


def test_remote_videos_over_the_size_limit_or_missing_are_refused(model, video_site, video_dir):
    with _app(model, max_video_bytes=1000) as http:
        too_large = http.post("/v1/chat/completions", json=_request(f"{video_site}/clip.mp4"))
    with _app(model) as http:
        missing = http.post("/v1/chat/completions", json=_request(f"{video_site}/missing.mp4"))
    assert (video_dir / "clip.mp4").stat().st_size > 1000
    assert too_large.status_code == 413 and too_large.json()["error"]["code"] == "video_too_large"
    assert missing.status_code == 400 and missing.json()["error"]["code"] == "video_download_failed"
