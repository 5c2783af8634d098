"""``create_app``: the FastAPI app of ``divot serve`` (OpenAI-compatible chat completions, video generation).

Routes are thin: ``messages`` reads the request's messages, ``videos`` fetches and checks its video,
``generation`` builds the prompt and decodes. The model is not thread-safe, so every model call (tokenizing a
video, answering, generating a video) runs behind one lock, in a worker thread; a streamed answer holds the lock
until its last chunk is sent or its client goes away (the decoding then stops at the next token). The lock is
an ``asyncio.Lock``: requests wait for it in the event loop, not in worker threads, so however many clients
queue, the request holding the model always finds a thread; they are served one after another, none dropped.
"""

from __future__ import annotations

import asyncio
import json
import logging
import tempfile
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from starlette.concurrency import run_in_threadpool

from divot.constants import MAX_CLIPS
from divot.serve.errors import APIError, error_body, install_error_handlers
from divot.serve.protocol import (
    AssistantMessage,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    Choice,
    ChunkChoice,
    ModelCard,
    ModelList,
    Usage,
    VideoGenerationRequest,
    completion_id,
    now,
)
from divot.serve.videos import VideoPolicy, local_video

logger = logging.getLogger(__name__)

MEDIA_TYPES = {"mp4": "video/mp4", "gif": "image/gif"}


@dataclass
class ServerState:
    model: object  # a Divot
    model_name: str
    policy: VideoPolicy
    created: int
    lock: asyncio.Lock  # one model call at a time

    def check_model_name(self, name: str | None) -> None:
        if name is not None and name != self.model_name:
            raise APIError(f"The model `{name}` does not exist: this server serves `{self.model_name}` "
                           "(GET /v1/models)", status=404, param="model", code="model_not_found")


def create_app(model, *, model_name: str = "divot", allowed_dirs=(), allow_remote_urls: bool = False,
               max_clips: int = MAX_CLIPS, max_video_bytes: int = 100 * 2**20):
    """The FastAPI app serving ``model`` (a ``Divot``) as ``model_name``.

    ``allowed_dirs``: the folders ``file://`` video URLs may point into (none: every file URL is refused);
    ``allow_remote_urls``: download http(s) video URLs (else refused); ``max_clips``: the longest video, in
    2-second clips; ``max_video_bytes``: the largest uploaded (data URL) or downloaded video."""
    from fastapi import FastAPI

    if not isinstance(model_name, str) or not model_name:
        raise ValueError(f"model_name must be a non-empty string, got {model_name!r}")
    state = ServerState(model, model_name, VideoPolicy(tuple(allowed_dirs), allow_remote_urls, max_video_bytes,
                                                       max_clips), now(), asyncio.Lock())
    app = FastAPI(title="Divot", summary="OpenAI-compatible chat completions about videos, and video generation")
    app.state.divot = state
    install_error_handlers(app)
    _add_routes(app, state)
    return app


def _add_routes(app, state: ServerState) -> None:
    from fastapi import Response

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok", "model": state.model_name}

    @app.get("/v1/models")
    def list_models() -> ModelList:
        return ModelList(data=[ModelCard(id=state.model_name, created=state.created)])

    @app.get("/v1/models/{name:path}")
    def get_model(name: str) -> ModelCard:
        state.check_model_name(name)
        return ModelCard(id=state.model_name, created=state.created)

    @app.post("/v1/chat/completions", response_model=None)
    async def chat_completions(request: ChatCompletionRequest):
        state.check_model_name(request.model)
        prompt, options = await _prepare(state, request)
        if request.stream:
            include_usage = bool(request.stream_options and request.stream_options.include_usage)
            return _event_stream(_chunks(state, prompt, request.seed, options, include_usage))
        from divot.serve.generation import complete

        async with state.lock:
            result = await run_in_threadpool(complete, state.model, prompt, request.seed, options)
        return ChatCompletion(id=completion_id(), created=now(), model=state.model_name, choices=[
            Choice(message=AssistantMessage(content=result.text), finish_reason=result.finish_reason)],
            usage=Usage.of(result.prompt_tokens, result.completion_tokens))

    @app.post("/v1/videos/generations", response_model=None)
    async def generate_video(request: VideoGenerationRequest) -> Response:
        state.check_model_name(request.model)
        if request.num_clips > state.policy.max_clips:
            raise APIError(f"num_clips is at most {state.policy.max_clips} on this server (--max-clips), got "
                           f"{request.num_clips}", param="num_clips", code="too_many_clips")
        async with state.lock:
            data = await run_in_threadpool(_generate, state, request)
        return Response(data, media_type=MEDIA_TYPES[request.response_format],
                        headers={"Content-Disposition": f'inline; filename="divot.{request.response_format}"',
                                 "X-Divot-Seed": str(request.seed)})


async def _prepare(state: ServerState, request: ChatCompletionRequest):
    """The prompt (video tokenized, history in place) and the decoding options; an ``APIError`` for bad input."""
    from divot.serve.generation import chat_prompt, decoding_options
    from divot.serve.messages import parse_messages

    chat = parse_messages(request.messages)
    clips = None
    if chat.video_url is not None:
        with ExitStack() as files:  # a decoded or downloaded video is deleted once tokenized
            video = local_video(chat.video_url, state.policy, chat.video_param)
            path = await run_in_threadpool(files.enter_context, video)  # downloads and probes: no model, no lock
            async with state.lock:
                clips = await run_in_threadpool(_tokens, state, path, chat.video_param)
    async with state.lock:  # the text tokenizer is the model's too
        prompt = await run_in_threadpool(chat_prompt, state.model, clips, chat.history, chat.question)
    return prompt, decoding_options(request, state.model, len(prompt))


def _tokens(state: ServerState, path: Path, param: str):
    """The video's tokens (clips, q, d); a video that fails to decode is the client's error."""
    from divot.data.video import VideoDecodeError

    try:
        return state.model.tokens(path, max_clips=state.policy.max_clips)
    except (VideoDecodeError, ValueError) as error:
        raise APIError(f"could not read the video: {error}", param=param, code="invalid_video") from None


async def _chunks(state: ServerState, prompt, seed: int | None, options: dict, include_usage: bool):
    """Server-sent events of a streamed answer: the role, the text pieces, the finish reason, the usage (if asked
    for), ``[DONE]``. Holds the model's lock from the first event until the generator ends or is closed."""
    import anyio

    from divot.serve.generation import CompletionStream

    ident, created = completion_id(), now()

    def event(delta: dict, finish_reason: str | None = None) -> str:
        chunk = ChatCompletionChunk(id=ident, created=created, model=state.model_name,
                                    choices=[ChunkChoice(delta=delta, finish_reason=finish_reason)])
        return _sse(chunk.model_dump(exclude=None if include_usage else {"usage"}))

    async with state.lock:
        stream = CompletionStream(state.model, prompt, seed, options)
        pieces = iter(stream)
        try:
            yield event({"role": "assistant"})
            while (piece := await run_in_threadpool(next, pieces, None)) is not None:
                yield event({"content": piece})
            yield event({}, stream.finish_reason)
            if include_usage:
                usage = Usage.of(stream.prompt_tokens, stream.completion_tokens)
                yield _sse(ChatCompletionChunk(id=ident, created=created, model=state.model_name, choices=[],
                                               usage=usage).model_dump())
        except Exception:  # the answer has begun (status 200): the error goes into the stream, as vLLM does
            logger.exception("streamed answer failed")
            yield _sse(error_body("internal server error while streaming (see the server log)",
                                  "internal_server_error", code="internal_error"))
        finally:  # a client that went away stops the decoding; the lock is released once it has stopped
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(stream.close)
    yield "data: [DONE]\n\n"


def _sse(payload: dict) -> str:
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"


def _event_stream(events):
    """A ``StreamingResponse`` that closes ``events`` (an async generator) however the response ends (finished,
    client gone, server stopping), so the generator's ``finally`` frees the model at once."""
    import anyio
    from fastapi.responses import StreamingResponse

    class ClosingStream(StreamingResponse):
        async def __call__(self, scope, receive, send):
            try:
                await super().__call__(scope, receive, send)
            finally:
                with anyio.CancelScope(shield=True):
                    await events.aclose()

    return ClosingStream(events, media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


def _generate(state: ServerState, request: VideoGenerationRequest) -> bytes:
    """The generated video's file bytes (mp4 or gif). Call with the model's lock held."""
    if state.model.detokenizer is None:
        raise APIError("this model has no de-tokenizer (detokenizer/): it answers questions but cannot generate "
                       "videos", param="model", code="video_generation_unavailable")
    try:
        video = state.model.generate_video(request.prompt, num_clips=request.num_clips, seed=request.seed,
                                           num_steps=request.num_steps, guidance_scale=request.guidance_scale)
    except ValueError as error:
        raise APIError(str(error), code="invalid_generation_settings") from None
    with tempfile.TemporaryDirectory(prefix="divot-serve-") as folder:
        return video.save(Path(folder) / f"video.{request.response_format}").read_bytes()
