"""``divot serve``: its options, its checks before a model loads, and a real server process answering the
``openai`` client."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from divot.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[2]


def test_serve_options():
    args = build_parser(["serve"]).parse_args(
        ["serve", "--model", "m", "--port", "9000", "--allowed-dir", "a", "--allowed-dir", "b", "--allow-remote-urls",
         "--max-clips", "4"])
    assert (args.port, args.allowed_dir, args.allow_remote_urls, args.max_clips) == (9000, [Path("a"), Path("b")],
                                                                                      True, 4)
    defaults = build_parser(["serve"]).parse_args(["serve"])
    assert (defaults.host, defaults.allowed_dir, defaults.allow_remote_urls) == ("127.0.0.1", [], False)


@pytest.mark.parametrize("argv, message", [
    (["--allowed-dir", "/no/such/folder"], "is not a directory"),
    (["--max-clips", "0"], "max_clips must be"),
    (["--port", "70000"], "--port must be"),
    (["--model", "/no/such/model"], "does not exist"),
], ids=["missing allowed dir", "zero clips", "bad port", "missing model"])
def test_bad_options_fail_before_loading_a_model(capsys, argv, message):
    assert main(["serve", *argv]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "divot serve: error:" in err and message in err


def test_serve_help_loads_neither_torch_nor_the_server_libraries():
    from tests.test_startup import cli, loaded_after

    loaded, proc = loaded_after(cli("serve", "--help"))
    assert proc.returncode == 0 and "--allowed-dir" in proc.stdout, proc.stderr
    assert loaded == []
    assert "fastapi" not in proc.stderr  # nothing imported it, nothing failed on it


@pytest.mark.slow  # a second process loads torch and the model (~20 s on 2 busy cores)
def test_the_serve_command_runs_a_server(divot_model_dir, shapes_video, tmp_path):
    from openai import OpenAI

    with socket.socket() as sock:  # a free port (released just before the server takes it)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = [sys.executable, "-m", "divot.cli", "serve", "--model", str(divot_model_dir), "--port", str(port),
               "--device", "cpu", "--allowed-dir", str(shapes_video.parent)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, proc.stdout.read()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "divot serve did not start"
            time.sleep(0.2)
        client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0)
        assert [m.id for m in client.models.list().data] == [divot_model_dir.name]
        response = client.chat.completions.create(
            model=divot_model_dir.name, max_tokens=3, seed=0, messages=[{"role": "user", "content": [
                {"type": "video_url", "video_url": {"url": shapes_video.as_uri()}},
                {"type": "text", "text": "What colour?"}]}])
        assert response.choices[0].finish_reason in ("stop", "length")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
