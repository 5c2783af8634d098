"""A real ``divot serve`` app (uvicorn on a free localhost port, in a background thread) around the tiny random
model, shared by the server tests, and the ``openai`` client that talks to it."""

import shutil
import socket
import threading
import time

import numpy as np
import pytest

NAME = "tiny"  # the served model name
MAX_CLIPS = 2  # the server's --max-clips: a 5-second video is too long


@pytest.fixture(scope="package")
def model(divot_model_dir):
    from divot import Divot

    return Divot.from_pretrained(divot_model_dir)


@pytest.fixture(scope="package")
def video_dir(tmp_path_factory, shapes_video):
    """The allowed folder: the shapes clip, a 5-second clip (3 clips), a file that is no video, and a symlink to a
    file outside the folder."""
    from divot.data.writers import write_video

    folder = tmp_path_factory.mktemp("allowed")
    shutil.copy(shapes_video, folder / "clip.mp4")
    frames = np.random.default_rng(0).integers(0, 255, (40, 32, 32, 3), dtype=np.uint8)
    write_video(frames, folder / "long.mp4", fps=8.0)
    (folder / "broken.mp4").write_bytes(b"not a video at all")
    (folder / "link.mp4").symlink_to(shapes_video)  # shapes_video lies outside the allowed folder
    return folder


@pytest.fixture(scope="package")
def app(model, video_dir):
    """The app: model name ``tiny``, videos from ``video_dir`` only, at most 2 clips."""
    from divot.serve import create_app

    return create_app(model, model_name=NAME, allowed_dirs=[video_dir], max_clips=MAX_CLIPS)


@pytest.fixture(scope="package")
def server(app):
    """The base URL of ``app`` running in uvicorn on a free localhost port."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    uv = uvicorn.Server(uvicorn.Config(app, log_level="warning", log_config=None))
    thread = threading.Thread(target=uv.run, kwargs={"sockets": [sock]}, daemon=True, name="divot-serve-test")
    thread.start()
    deadline = time.monotonic() + 30
    while not uv.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the test server did not start"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    uv.should_exit = True
    thread.join(timeout=10)
    sock.close()


@pytest.fixture(scope="package")
def client(server):
    from openai import OpenAI

    return OpenAI(base_url=f"{server}/v1", api_key="x", max_retries=0, timeout=60)


def video_part(path) -> dict:
    return {"type": "video_url", "video_url": {"url": path.as_uri()}}


def user(*parts) -> dict:
    """A user message: strings are text parts, dicts are other parts."""
    return {"role": "user", "content": [{"type": "text", "text": p} if isinstance(p, str) else p for p in parts]}
