"""OpenAI chat messages -> what ``Conversation`` needs: the video URL, the earlier turns and the question.

- ``content`` is a string or a list of parts: ``{"type": "text", "text": ...}`` and at most one video per request,
  ``{"type": "video_url", "video_url": {"url": ...}}`` (vLLM's part type), in a user message. A message's text
  parts are joined with newlines.
- System (and ``developer``) messages are prepended to the first user message, separated by a blank line: the
  Mistral-Instruct template the model was trained on has no system turn, and this is what Mistral's own chat
  template does with one.
- The other messages must alternate user, assistant, user, ... and end with the user's question; the pairs
  before it are the history. The video always opens the first turn of the prompt (the layout the model was
  trained on), whichever user message carried it.
"""

from __future__ import annotations

from dataclasses import dataclass

from divot.serve.errors import APIError


@dataclass
class ParsedChat:
    question: str
    history: list[tuple[str, str]]  # (question, answer) turns before the question, oldest first
    video_url: str | None = None
    video_param: str | None = None  # where the video came from, for errors ("messages.0.content.1")


def parse_messages(messages: list) -> ParsedChat:
    """Read ``messages`` (``ChatMessage`` models: ``role``, ``content``); an ``APIError`` (400) names the first
    message that breaks the rules of the module docstring."""
    system: list[str] = []
    turns: list[tuple[str, str, str]] = []  # (role, text, param)
    video_url = video_param = None
    for i, message in enumerate(messages):
        param = f"messages.{i}.content"
        text, videos = _read_content(message.content, message.role, param)
        if videos:
            if message.role != "user":
                raise APIError(f"a video must be in a user message, not a {message.role} message", param=param,
                               code="invalid_message")
            if video_url is not None or len(videos) > 1:
                raise APIError("this server takes one video per conversation; found a second one",
                               param=videos[-1][1], code="too_many_videos")
            video_url, video_param = videos[0]
        if message.role in ("system", "developer"):
            if text.strip():
                system.append(text)
            continue
        if message.role == "user" and not text.strip():
            raise APIError(f"message {i} (user) has no text: say what to do with the video", param=param,
                           code="invalid_message")
        turns.append((message.role, text, param))
    _check_order(turns)
    if system:
        role, text, param = turns[0]
        turns[0] = (role, "\n\n".join([*system, text]), param)
    texts = [text for _, text, _ in turns]
    history = list(zip(texts[:-1:2], texts[1:-1:2], strict=True))
    return ParsedChat(texts[-1], history, video_url, video_param)


def _check_order(turns: list[tuple[str, str, str]]) -> None:
    if not turns:
        raise APIError("messages hold no user message: the last message must be the user's question",
                       param="messages", code="invalid_message")
    for k, (role, _, param) in enumerate(turns):
        expected = "user" if k % 2 == 0 else "assistant"
        if role != expected:
            raise APIError(f"user and assistant messages must alternate, starting with a user message: expected "
                           f"a {expected} message, got a {role} message", param=param.rsplit(".", 1)[0],
                           code="invalid_message")
    if turns[-1][0] != "user":
        raise APIError("the last message must be the user's question, got an assistant message",
                       param=turns[-1][2].rsplit(".", 1)[0], code="invalid_message")


def _read_content(content, role: str, param: str) -> tuple[str, list[tuple[str, str]]]:
    """The text of one message's content and its video URLs with their parameter paths."""
    if content is None:
        raise APIError(f"a {role} message needs content", param=param, code="invalid_message")
    if isinstance(content, str):
        return content, []
    texts, videos = [], []
    for j, part in enumerate(content):
        where = f"{param}.{j}"
        kind = part.get("type")
        if kind == "text":
            text = part.get("text")
            if not isinstance(text, str):
                raise APIError("a text part needs a string 'text'", param=where, code="invalid_content_part")
            texts.append(text)
        elif kind == "video_url":
            video = part.get("video_url")
            url = video.get("url") if isinstance(video, dict) else video
            if not isinstance(url, str) or not url:
                raise APIError('a video_url part is {"type": "video_url", "video_url": {"url": "..."}}',
                               param=where, code="invalid_content_part")
            videos.append((url, where))
        else:
            raise APIError(f"unsupported content part type {kind!r}: this server takes 'text' and 'video_url' "
                           "parts", param=where, code="invalid_content_part")
    return "\n".join(texts), videos
