"""The model side of a chat completion: the prompt, the decoding options, and the answer with its token counts.

The answer is made exactly as ``Divot.ask`` / ``Conversation.ask`` make it (same prompt, same ``generate_ids``
call under the same seed), so the server's text equals the library's for the same seed; here the new token ids
are kept too, for ``usage`` and ``finish_reason``. Nothing here is thread-safe: the app runs one call at a time.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from divot.chat.streaming import TextStream
from divot.serve.errors import APIError


@dataclass
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop" (the model ended its answer) or "length" (max_tokens reached)


def chat_prompt(model, clips, history: list[tuple[str, str]], question: str):
    """The ``LLMSample`` prompt ``Conversation.ask`` would build after ``history`` for ``question`` (``clips``:
    the video's tokens (clips, q, d), or None for a text-only chat)."""
    from divot.chat.conversation import Conversation

    conversation = Conversation(model)
    conversation.clips = clips
    conversation.add_turns(history)  # the turns a client sends back, as if this conversation had them
    try:
        return conversation.prompt(question)
    except ValueError as error:
        raise APIError(str(error), param="messages", code="invalid_message") from None


def decoding_options(request, model, prompt_tokens: int) -> dict:
    """``generate_ids`` options from a ``ChatCompletionRequest``: temperature 0 is greedy decoding; left out, the
    model's defaults (temperature, top-p, ``max_new_tokens``) apply. The prompt plus the answer must fit the
    LLM's context (``max_position_embeddings``), else a 400 as OpenAI's context-length error."""
    options: dict = {}
    if request.temperature == 0:
        options["greedy"] = True
    elif request.temperature is not None:
        options["temperature"] = request.temperature
    if request.top_p is not None and not options.get("greedy"):
        options["top_p"] = request.top_p
    max_tokens = request.max_completion_tokens or request.max_tokens or model.llm.config.max_new_tokens
    options["max_new_tokens"] = max_tokens
    context = getattr(getattr(model.llm.llm, "config", None), "max_position_embeddings", None)
    if isinstance(context, int) and prompt_tokens + max_tokens > context:
        raise APIError(f"this model's context holds {context} tokens; the prompt has {prompt_tokens} and "
                       f"max_tokens asks for {max_tokens}: lower max_tokens or send a shorter conversation",
                       param="max_tokens", code="context_length_exceeded")
    return options


def complete(model, prompt, seed: int | None, options: dict) -> Completion:
    """The whole answer: ``Divot.generate_text``'s text, with the counts of the prompt and the new token ids."""
    from divot.chat.checks import seeded

    with seeded(seed, model.device):
        ids = model.llm.generate_ids(prompt, **options)
    text = model.llm.tokenizer.decode(ids, skip_special_tokens=True).strip()
    return Completion(text, len(prompt), len(ids), finish_reason(model, ids, options["max_new_tokens"]))


def finish_reason(model, ids: list[int], max_new_tokens: int) -> str:
    ended = bool(ids) and ids[-1] == model.builder.ids.eos
    return "length" if not ended and len(ids) >= max_new_tokens else "stop"


class CompletionStream:
    """The answer's text pieces as they are decoded (``Divot.ask(stream=True)``'s, joined: ``complete``'s text).
    Iterate it once; afterwards ``completion_tokens`` and ``finish_reason`` are known. ``close()`` stops the
    decoding at the next token (a client that went away)."""

    def __init__(self, model, prompt, seed: int | None, options: dict):
        self.model = model
        self.prompt_tokens = len(prompt)
        self.max_new_tokens = options["max_new_tokens"]
        self._stream = TextStream(model, prompt, seed=seed, **options)

    def __iter__(self) -> Iterator[str]:
        return self._stream

    def close(self) -> None:
        self._stream.close()

    @property
    def completion_tokens(self) -> int:
        return len(self._stream.ids)

    @property
    def finish_reason(self) -> str:
        return finish_reason(self.model, self._stream.ids, self.max_new_tokens)
