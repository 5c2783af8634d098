"""``POST /v1/videos/generations``: a playable mp4 (or gif) of the generated video; a model without a
de-tokenizer answers with an OpenAI-style error instead."""

import httpx
import pytest

from divot.data.video import probe_video
from tests.serve.conftest import MAX_CLIPS, NAME

GENERATION = {"prompt": "a red circle moves left", "num_steps": 2, "seed": 1}


def test_generation_returns_a_playable_mp4(server, model, tmp_path):
    response = httpx.post(f"{server}/v1/videos/generations", json={**GENERATION, "model": NAME}, timeout=120)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "video/mp4" and response.headers["x-divot-seed"] == "1"
    path = tmp_path / "generated.mp4"
    path.write_bytes(response.content)
    info = probe_video(path)  # decodes frame 0: a real, playable file
    expected = model.generate_video(GENERATION["prompt"], seed=1, num_steps=2)
    assert info.num_frames == len(expected) and info.fps == pytest.approx(expected.fps)
    assert (info.height, info.width) == expected.size


def test_generation_as_gif(server, tmp_path):
    response = httpx.post(f"{server}/v1/videos/generations", json={**GENERATION, "response_format": "gif"},
                          timeout=120)
    assert response.status_code == 200 and response.headers["content-type"] == "image/gif"
    assert response.content[:6] in (b"GIF87a", b"GIF89a")


@pytest.mark.parametrize("body, status, code", [
    ({**GENERATION, "num_clips": MAX_CLIPS + 1}, 400, "too_many_clips"),
    ({**GENERATION, "num_steps": 0}, 400, "invalid_body"),
    ({**GENERATION, "model": "other"}, 404, "model_not_found"),
    ({"num_steps": 2}, 400, "invalid_body"),
    ({**GENERATION, "size": "1024x1024"}, 400, "invalid_body"),
], ids=["too many clips", "zero steps", "unknown model", "no prompt", "unknown field"])
def test_bad_generation_requests(server, body, status, code):
    response = httpx.post(f"{server}/v1/videos/generations", json=body, timeout=60)
    assert response.status_code == status
    assert response.json()["error"]["code"] == code


def test_a_model_without_detokenizer_cannot_generate(model):
    from fastapi.testclient import TestClient

    from divot import Divot
    from divot.serve import create_app

    text_only = Divot.from_components(model.tokenizer, model.llm)
    with TestClient(create_app(text_only, model_name="text-only")) as http:
        response = http.post("/v1/videos/generations", json=GENERATION)
        assert response.status_code == 400
        error = response.json()["error"]
        assert error["code"] == "video_generation_unavailable" and "de-tokenizer" in error["message"]
        assert http.get("/health").status_code == 200  # still serving
