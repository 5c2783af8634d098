"""A local stand-in for an OpenAI-compatible API (``POST /v1/chat/completions``, JSON in, JSON out, the
response's ``model`` and ``system_fingerprint`` set as OpenAI sets them), for testing clients without a network.

``reply(body) -> str`` writes the assistant's message for a request body; every request is kept in
``requests`` (path, body, Authorization header)."""

from __future__ import annotations

import base64
import io
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import numpy as np


class OpenAIStub:
    def __init__(self, reply, status: int = 200, fingerprint: str = "fp_stub"):
        self.requests, self.status = [], status
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append({"path": self.path, "body": body, "auth": self.headers.get("Authorization")})
                if self.path != "/v1/chat/completions":
                    status, data = 404, {"error": {"message": f"no route {self.path}", "type": "invalid_request_error",
                                                   "code": 404}}
                else:
                    status = server.status
                    data = {"id": "chatcmpl-stub", "object": "chat.completion", "created": 0,
                            "model": body["model"] + "-2024-08-06", "system_fingerprint": fingerprint,
                            "choices": [{"index": 0, "finish_reason": "stop",
                                         "message": {"role": "assistant", "content": reply(body)}}],
                            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}
                raw = json.dumps(data).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, *args):
                pass

        self.httpd = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def images_of(body: dict) -> list[np.ndarray]:
    """The frames of a vision request: every ``image_url`` part decoded from its JPEG data URL, uint8 (h, w, 3)."""
    from PIL import Image

    frames = []
    for part in body["messages"][-1]["content"]:
        if part.get("type") == "image_url":
            url = part["image_url"]["url"]
            assert url.startswith("data:image/jpeg;base64,"), url[:40]
            image = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
            assert image.format == "JPEG"
            frames.append(np.asarray(image.convert("RGB")))
    return frames


def caption_reply(body: dict) -> str:
    """A caption from the frames themselves: how many there were and how much they change."""
    frames = np.stack(images_of(body)).astype(np.float32)  # (n, h, w, 3)
    change = float(np.abs(np.diff(frames, axis=0)).mean()) if len(frames) > 1 else 0.0
    return f"A scene of {len(frames)} frames that {'moves' if change > 0.5 else 'stays still'}."


def storyline_reply(body: dict) -> str:
    """A storyline in the JSON the storyline prompt asks for, one sentence per numbered caption."""
    captions = re.findall(r"^\d+\. (.+)$", body["messages"][-1]["content"], re.MULTILINE)
    story = {"instruction": f"Generate a story about {captions[0].rstrip('.').lower()}.",
             "sentences": [f"In part {i}, {c.rstrip('.').lower()}." for i, c in enumerate(captions, start=1)]}
    return "```json\n" + json.dumps(story) + "\n```"
