"""What the page's callbacks do, as plain functions over a ``Divot`` (no gradio here): check the inputs, call the
public API, and turn what goes wrong into a ``UIError`` whose message the page shows as is.

- ``chat_answer`` / ``chat_clear``: the Chat tab; the conversation lives in a ``ChatState`` (one per browser
  session) and the answer streams in (a generator yielding the growing transcript).
- ``generate_clip``: the Generate tab; writes the video as an mp4 the page can play.
- ``story_board``: the Story tab; yields the storyboard's HTML as each text, then each clip, exists.
- ``rendering_notice``: why the Generate and Story tabs are off (a model without a de-tokenizer), or None.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from divot.ui.storyboard import board_html

logger = logging.getLogger(__name__)

# Shown in the Generate and Story tabs (and raised by their handlers) when the model cannot render video.
NO_DETOKENIZER = ("This model has no de-tokenizer (its directory has no `detokenizer/`), so it cannot make "
                  "videos: the Generate and Story tabs are off. Start `divot ui --model DIR` with a model that has "
                  "one (the bundled `shapes-tiny` does) to use them.")
DISPLAY_SIDE = 256  # generated clips are tiny (32 px): shown enlarged, nearest-neighbour, to about this side
_READ_ERRORS = (ValueError, OSError, RuntimeError)  # what decoding a video file raises (FileNotFoundError is OSError)


class UIError(ValueError):
    """A problem the page shows to the user as its message (bad input, a model part that is missing)."""


@dataclass
class ChatState:
    """One browser session's chat: the video the conversation is about and the ``Conversation``."""

    video: str | None = None
    conversation: object | None = field(default=None, repr=False)  # divot.chat.Conversation

    def messages(self, pending: tuple[str, str] | None = None) -> list[dict]:
        """The transcript as chat messages (``{"role", "content"}``), plus a ``pending`` (question, partial
        answer) turn."""
        turns = list(self.conversation.history) if self.conversation is not None else []
        if pending is not None:
            turns.append(pending)
        out = []
        for question, answer in turns:
            out += [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
        return out

    def status(self) -> str:
        if self.conversation is None:
            return "Pick an example clip or upload a video, then ask a question."
        clips = self.conversation.clips.shape[0]
        turns = len(self.conversation.history)
        return (f"Talking about **{Path(self.video).name}** ({clips} clip{'s' * (clips != 1)}), "
                f"{turns} turn{'s' * (turns != 1)} so far.")


def whole_number(value, what: str, minimum: int = 0) -> int:
    """``value`` (a page number field: int, float or None) as an int >= ``minimum``; a ``UIError`` otherwise."""
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value != int(value) or value < minimum:
        raise UIError(f"{what} must be a whole number >= {minimum}, got {value!r}")
    return int(value)


def chat_answer(model, state: ChatState | None, video: str | None, question: str | None,
                seed=0) -> Iterator[tuple[ChatState, list[dict], str]]:
    """Answer ``question`` about ``video`` (a file path) after the turns so far, streamed: yields (state,
    messages, status) each time the answer grows; the turn joins the history at the end. A new video starts a new
    conversation. ``seed`` (a whole number) seeds this turn's sampling, as ``Conversation.ask(seed=...)``."""
    state = state if state is not None else ChatState()
    question = (question or "").strip()
    if not video:
        raise UIError("Upload a video or pick an example clip first.")
    if not question:
        raise UIError("Type a question about the video first.")
    seed = whole_number(seed, "The seed")
    if state.conversation is None or state.video != str(video):
        try:
            conversation = model.chat(video, seed=seed)
        except _READ_ERRORS as err:
            raise UIError(f"Could not read the video {Path(video).name}: {err}") from err
        state = ChatState(str(video), conversation)
    pieces = state.conversation.ask(question, seed=seed, stream=True)
    answer = ""
    yield state, state.messages((question, answer)), f"Answering about **{Path(video).name}** …"
    for piece in pieces:
        answer += piece
        yield state, state.messages((question, answer)), f"Answering about **{Path(video).name}** …"
    yield state, state.messages(), state.status()


def chat_clear(state: ChatState | None) -> tuple[ChatState, list[dict], str]:
    """Forget the turns (the video stays): (state, messages, status)."""
    state = state if state is not None else ChatState()
    if state.conversation is not None:
        state.conversation.reset()
    return state, state.messages(), "Conversation cleared. " + state.status()


def rendering_notice(model) -> str | None:
    """``NO_DETOKENIZER`` when ``model`` cannot render video, else None."""
    return None if model.has_detokenizer else NO_DETOKENIZER


def _check_renders(model) -> None:
    if not model.has_detokenizer:
        raise UIError(NO_DETOKENIZER)


def render_settings(sampler: str | None, num_steps, guidance_scale) -> dict:
    """The de-tokenizer settings from the page's fields, checked: ``sampler`` (None: the model's),
    ``num_steps`` (a whole number >= 1), ``guidance_scale`` (a finite number >= 1; 1 turns guidance off)."""
    from divot.diffusion.config import SAMPLERS

    if sampler is not None and sampler not in SAMPLERS:
        raise UIError(f"Unknown sampler {sampler!r}: choose one of {', '.join(SAMPLERS)}.")
    if not isinstance(guidance_scale, (int, float)) or not math.isfinite(guidance_scale) or guidance_scale < 1:
        raise UIError(f"The guidance scale must be a number >= 1 (1 turns guidance off), got {guidance_scale!r}")
    return {"sampler": sampler, "num_steps": whole_number(num_steps, "The number of steps", minimum=1),
            "guidance_scale": float(guidance_scale)}


def enlarged(video, side: int = DISPLAY_SIDE):
    """``video`` (a ``divot.chat.Video``) scaled up by a whole factor (nearest-neighbour, crisp pixels) so that
    its longer side is about ``side`` px; unchanged when it is that large already."""
    from divot.chat import Video

    frames = video.to_uint8()  # (t, h, w, 3)
    factor = max(1, side // max(frames.shape[1:3]))
    if factor == 1:
        return video
    frames = frames.repeat(factor, axis=1).repeat(factor, axis=2)  # (t, h*f, w*f, 3)
    return Video(frames, fps=video.fps, settings=video.settings)


def generate_clip(model, prompt: str | None, sampler: str | None, num_steps, guidance_scale, seed=0,
                  num_clips=1, out_dir: str | Path = ".") -> tuple[Path, str]:
    """A video for ``prompt`` written as an mp4 under ``out_dir`` (enlarged for the page); returns (path, a
    Markdown line saying what was made and how). The de-tokenizer reports its steps through tqdm."""
    _check_renders(model)
    prompt = (prompt or "").strip()
    if not prompt:
        raise UIError("Type a prompt first, e.g. \"a red circle moves left\".")
    settings = render_settings(sampler, num_steps, guidance_scale)
    seed = whole_number(seed, "The seed")
    num_clips = whole_number(num_clips, "The number of clips", minimum=1)
    try:
        video = model.generate_video(prompt, num_clips=num_clips, seed=seed, progress=True, **settings)
    except ValueError as err:
        raise UIError(f"Could not generate the video: {err}") from err
    path = enlarged(video).save(Path(out_dir) / f"generated-{uuid.uuid4().hex[:12]}.mp4")
    used = video.settings
    h, w = video.size
    status = (f"{len(video)} frames of {h}×{w} px at {video.fps:g} fps ({video.duration:g} s), shown enlarged; "
              f"sampler {used.get('sampler')}, {used.get('num_steps')} steps, guidance "
              f"{used.get('guidance_scale')}, seed {seed}.")
    logger.info("generated %r: %s", prompt, status)
    return path, status


def story_board(model, instruction: str | None, num_segments, seed=0, num_steps=None) -> Iterator[tuple[str, str]]:
    """Tell a story of ``num_segments`` segments, yielding (storyboard HTML, status) as it is made: each
    segment's text as soon as the story LLM has written it, then its clip once rendered
    (``Divot.tell_story(stream=True)``). ``num_steps`` None: the model's default."""
    _check_renders(model)
    instruction = (instruction or "").strip()
    if not instruction:
        raise UIError("Type an instruction first, e.g. \"Generate a story about a red circle.\"")
    num_segments = whole_number(num_segments, "The number of segments", minimum=1)
    seed = whole_number(seed, "The seed")
    steps = None if num_steps is None else whole_number(num_steps, "The number of steps", minimum=1)
    try:
        items = model.tell_story(instruction, num_segments=num_segments, seed=seed, num_steps=steps, stream=True,
                                 progress=True)
    except ValueError as err:
        raise UIError(f"Could not tell the story: {err}") from err
    texts: list[str] = []
    gifs: list[bytes] = []
    yield board_html(texts, gifs), f"Writing segment 1 of {num_segments} …"
    for item in items:
        if isinstance(item, str):
            texts.append(item)
            status = f"Rendering clip {len(texts)} of {num_segments} …"
        else:
            gifs.append(enlarged(item, side=192).to_gif_bytes())
            status = (f"Writing segment {len(gifs) + 1} of {num_segments} …" if len(gifs) < num_segments
                      else f"Done: {num_segments} segment{'s' * (num_segments != 1)}, seed {seed}.")
        yield board_html(texts, gifs), status
