"""A minimal OpenAI-compatible ``/v1/chat/completions`` client (``urllib``, no extra dependency), shared by the
evaluation judge (``divot.eval.judge.HTTPJudge``), the clip captioner and the storyline writer
(``divot.data.episodes``): temperature 0, an API key from an environment variable (never recorded), and
what the server reports about itself (the response's ``model`` and ``system_fingerprint``) kept for the
output's provenance. Rate limits (429) and server errors (5xx) are retried with a growing pause."""

from __future__ import annotations

import json
import logging
import os
import time
import urllib.error
import urllib.request

logger = logging.getLogger(__name__)

RETRY_STATUS = (429, 500, 502, 503, 504)


def chat_completions_url(url: str) -> str:
    """``http://host:8000/v1`` or the full ``.../chat/completions`` URL -> the full URL."""
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"expected an http(s) URL of an OpenAI-compatible API, got {url!r}")
    url = url.rstrip("/")
    return url if url.endswith("/chat/completions") else url + "/chat/completions"


class ChatClient:
    """Chat completions from ``model`` at ``url``; ``served_models`` / ``fingerprints`` collect what the server
    said it ran. ``what`` names the endpoint in errors."""

    what = "endpoint"

    def __init__(self, url: str, model: str, api_key_env: str | None = "OPENAI_API_KEY", timeout: float = 120.0,
                 max_tokens: int = 256, retries: int = 2, retry_pause: float = 2.0):
        if not model:
            raise ValueError(f"an OpenAI-compatible {self.what} needs a model name (for {url})")
        self.url, self.model = chat_completions_url(url), model
        self.timeout, self.max_tokens, self.retries, self.retry_pause = timeout, max_tokens, retries, retry_pause
        self._api_key = os.environ.get(api_key_env) if api_key_env else None
        self.served_models: set[str] = set()
        self.fingerprints: set[str] = set()

    @property
    def identity(self) -> dict:
        return {"kind": "openai-compatible-http", "url": self.url, "model": self.model,
                "served_model": sorted(self.served_models), "system_fingerprint": sorted(self.fingerprints),
                "temperature": 0.0, "max_tokens": self.max_tokens}

    def complete(self, messages: list[dict]) -> str:
        """The reply's text (``choices[0].message.content``). Raises RuntimeError naming the endpoint when it
        cannot be reached, answers an error status (after the retries) or sends no content."""
        body = json.dumps({"model": self.model, "messages": messages, "temperature": 0.0,
                           "max_tokens": self.max_tokens}).encode()
        headers = {"Content-Type": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        for attempt in range(self.retries + 1):
            request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    data = json.loads(response.read().decode())
                break
            except urllib.error.HTTPError as err:
                if err.code in RETRY_STATUS and attempt < self.retries:
                    logger.warning("%s answered HTTP %d; retrying", self.url, err.code)
                    time.sleep(self.retry_pause * (attempt + 1))
                    continue
                raise RuntimeError(f"{self.what} {self.url} answered HTTP {err.code}: {err.read()[:300]!r}") from err
            except urllib.error.URLError as err:
                raise RuntimeError(f"{self.what} {self.url} cannot be reached: {err.reason}") from err
        if data.get("model"):
            self.served_models.add(str(data["model"]))
        if data.get("system_fingerprint"):
            self.fingerprints.add(str(data["system_fingerprint"]))
        try:
            content = data["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError) as err:
            raise RuntimeError(f"{self.what} {self.url} sent no choices[0].message.content: {data!r:.300}") from err
        return "" if content is None else str(content)
