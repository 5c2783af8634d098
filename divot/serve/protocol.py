"""Request and response bodies of ``divot serve`` as pydantic models (OpenAI's chat completion format, as vLLM's
OpenAI entry point has it, plus the video generation request).

Requests forbid unknown fields, so a parameter this server does not implement (``stop``, ``tools``,
``logprobs`` ...) is a 400 naming it rather than silently ignored. Message content is kept as plain JSON here and
read by ``divot.serve.messages``, which explains what is wrong with a part more precisely than a union would.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

SEED_MAX = 2**63 - 1  # what torch.manual_seed takes


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    include_usage: bool = False


class ChatMessage(BaseModel):
    # Lenient: clients send back the assistant messages they received (refusal, tool_calls: null ...).
    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[dict[str, Any]] | None = None


class ChatCompletionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)  # 0: greedy; None: the model's (0.7)
    top_p: float | None = Field(default=None, gt=0, le=1)  # None: the model's (0.5)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)  # OpenAI's newer name for max_tokens
    seed: int | None = Field(default=None, ge=0, le=SEED_MAX)
    n: int | None = 1
    user: str | None = None  # accepted and ignored
    frequency_penalty: float | None = None
    presence_penalty: float | None = None

    @field_validator("n")
    @classmethod
    def _one_choice(cls, n):
        if n not in (None, 1):
            raise ValueError(f"this server returns one choice per request: n must be 1, got {n}")
        return n

    @field_validator("frequency_penalty", "presence_penalty")
    @classmethod
    def _no_penalty(cls, value):
        if value not in (None, 0):
            raise ValueError(f"penalties are not supported: leave it out or send 0, got {value}")
        return value


class VideoGenerationRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    prompt: str = Field(min_length=1)
    model: str | None = None
    num_clips: int = Field(default=1, ge=1)  # 2-second clips; at most the server's --max-clips
    seed: int = Field(default=0, ge=0, le=SEED_MAX)
    num_steps: int | None = Field(default=None, ge=1, le=1000)  # None: the model's generation.json
    guidance_scale: float | None = Field(default=None, ge=0, le=50)
    response_format: Literal["mp4", "gif"] = "mp4"


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int

    @classmethod
    def of(cls, prompt_tokens: int, completion_tokens: int) -> Usage:
        return cls(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                   total_tokens=prompt_tokens + completion_tokens)


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class Choice(BaseModel):
    index: int = 0
    message: AssistantMessage
    finish_reason: Literal["stop", "length"]


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: Usage


class ChunkChoice(BaseModel):
    index: int = 0
    delta: dict[str, str]  # {"role": "assistant"}, {"content": piece} or {} (the last chunk)
    finish_reason: Literal["stop", "length"] | None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: Usage | None = None


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "divot"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


def completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


def now() -> int:
    return int(time.time())
