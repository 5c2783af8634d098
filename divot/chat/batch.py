"""Several videos and questions per call of ``Divot.ask`` / ``caption`` / ``generate_text``, decoded in batches.

What a call holds (``pair_up``): a single video is a path, a ``Video``, an array / tensor of frames, or a list of
frames (PIL images or (h, w, 3) arrays); a list whose items are themselves videos (paths, ``Video``s, (t, ...)
arrays or tensors, lists of frames) is several videos. Then

- one video, one question: one answer, a ``str`` (the unbatched call, unchanged);
- several videos, one question: that question about each video;
- one video, several questions: each question about that video (the video is tokenized once);
- several videos, several questions: pairwise; the counts must be equal (a ``ValueError`` otherwise).

The answers come back as a list in that order. Each video is tokenized on its own (as an unbatched call does) and
the prompts are decoded together, left-padded (``divot.llm.batch_generation``), ``batch_size`` at a time (None:
all at once). Greedy answers equal the unbatched answers token for token. ``seed`` seeds one generator for the
whole call: the same call with the same seed gives the same answers, but item i is not what an unbatched call
with that seed gives, since the rows draw from one stream.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from divot.chat.checks import check_decoding, seeded


def is_video_list(value) -> bool:
    """True when ``value`` is several videos (see the module docstring), False for one video (or None)."""
    if not isinstance(value, (list, tuple)) or not value:
        return False
    from divot.chat.video import Video

    def one_video(item) -> bool:
        if isinstance(item, (str, Path, Video)):
            return True
        if isinstance(item, (np.ndarray, torch.Tensor)):
            return item.ndim == 4  # frames (t, h, w, 3) or (t, 3, h, w); a 3-D array is one frame
        return isinstance(item, (list, tuple))  # a list of frames
    return all(one_video(item) for item in value)


def pair_up(videos, questions, what: str = "ask") -> tuple[list, list[str]]:
    """The (video, question) pairs of a batched call, videos and questions as lists of equal length."""
    many_videos, many_questions = is_video_list(videos), isinstance(questions, (list, tuple))
    if isinstance(videos, (list, tuple)) and not videos:
        raise ValueError(f"{what}: expected a video or a non-empty list of videos, got an empty list")
    if many_questions and not questions:
        raise ValueError(f"{what}: expected a question or a non-empty list of questions, got an empty list")
    videos = list(videos) if many_videos else [videos]
    questions = list(questions) if many_questions else [questions]
    if many_videos and many_questions and len(videos) != len(questions):
        raise ValueError(f"{what}: {len(videos)} videos but {len(questions)} questions; give one video, one "
                         "question, or as many videos as questions (paired in order)")
    n = max(len(videos), len(questions))
    return videos * (n // len(videos)), questions * (n // len(questions))


def tokens_of(model, videos: list) -> list:
    """Clip tokens (clips, q, d) of each video, a video object given several times tokenized once; None stays
    None (a text-only question)."""
    seen: dict[int, torch.Tensor | None] = {}
    out = []
    for video in videos:
        if id(video) not in seen:
            seen[id(video)] = None if video is None else model.tokens(video)
        out.append(seen[id(video)])
    return out


def ask_batch(model, videos, questions, *, seed: int | None = None, batch_size: int | None = None,
              **decoding) -> list[str]:
    """``Divot.ask`` for several videos and / or questions (see the module docstring)."""
    check_decoding(decoding)
    videos, questions = pair_up(videos, questions, "ask")
    for i, question in enumerate(questions):
        if not isinstance(question, str) or not question.strip():
            raise ValueError(f"ask: expected non-empty questions, got {question!r} at position {i}")
    clips = tokens_of(model, videos)
    prompts = [model.builder.qa_prompt(c, q) for c, q in zip(clips, questions, strict=True)]
    return generate_batch(model, prompts, seed=seed, batch_size=batch_size, **decoding)


def caption_batch(model, videos, instruction=None, *, seed: int | None = None, batch_size: int | None = None,
                  **decoding) -> list[str]:
    """``Divot.caption`` for several videos: the caption prompt, or with ``instruction`` (one for all, or one per
    video) a QA turn."""
    if instruction is not None:
        return ask_batch(model, videos, instruction, seed=seed, batch_size=batch_size, **decoding)
    check_decoding(decoding)
    videos = list(videos) if is_video_list(videos) else [videos]
    prompts = [model.builder.caption_prompt(c) for c in tokens_of(model, videos)]
    return generate_batch(model, prompts, seed=seed, batch_size=batch_size, **decoding)


def generate_batch(model, prompts: list, *, seed: int | None = None, batch_size: int | None = None,
                   **decoding) -> list[str]:
    """Text continuing each ``LLMSample`` prompt, decoded together (``DivotLLM.generate_texts``)."""
    check_decoding(decoding)
    if not prompts:
        raise ValueError("generate_text: expected a prompt or a non-empty list of prompts, got an empty list")
    with seeded(seed, model.device):
        return model.llm.generate_texts(list(prompts), batch_size=batch_size, **decoding)
