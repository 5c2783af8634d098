"""A caption for every clip of a ``metadata.jsonl`` (``divot data captions``).

Two captioners:
- ``DivotCaptioner``: a Divot model directory or bundled name, through ``Divot.caption`` (greedy) on the clip's
  16 frames (the clip the story reader decodes for the same [start, end));
- ``OpenAICaptioner``: any OpenAI-compatible vision endpoint, the way the paper captioned with GPT-4V: one
  ``/v1/chat/completions`` request per clip whose user message is ``CAPTION_PROMPT`` followed by 8 frames
  sampled uniformly over the clip (the centres of 8 equal parts), each an ``image_url`` part holding a JPEG
  data URL (long side at most 512 px).

Output: ``captions.jsonl`` (the metadata rows that got a caption, with ``caption`` and ``captioner``) and
``captions.json``: the captioner's identity (model, the version the server reported: its ``model`` field and
``system_fingerprint``, the prompt), counts and time. Resumable: rows are appended to
``captions.partial.jsonl`` as they come; a rerun keeps the rows the same captioner made and captions the rest,
and ``captions.jsonl`` is written atomically at the end. Clips whose video cannot be read are skipped and
counted, as are empty captions (both are tried again on a rerun).
"""

from __future__ import annotations

import base64
import io
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from divot.data.episodes.clips import window_clip_indices
from divot.openai_chat import ChatClient

logger = logging.getLogger(__name__)

CAPTIONS = "captions.jsonl"
PARTIAL = "captions.partial.jsonl"
SUMMARY = "captions.json"
CAPTION_PROMPT = (
    "These are {num_frames} frames, in order, sampled uniformly from a 2-second video clip. Describe what "
    "happens in the clip in one short sentence: who or what is in it and what they do. Answer with the "
    "sentence only."
)
NUM_FRAMES = 8
MAX_SIDE = 512
CHUNK_CLIPS = 32  # clips whose frames are decoded together (bounds memory on long, large episodes)
JPEG_QUALITY = 90


@dataclass(frozen=True)
class ClipRef:
    """A clip of a metadata row: native frames [start_frame, end_frame) of ``video`` at ``fps``."""

    id: str
    video: Path
    start_frame: int
    end_frame: int
    fps: float

    @classmethod
    def from_row(cls, row: dict, where: str) -> ClipRef:
        try:
            return cls(str(row["id"]), Path(row["video"]), int(row["start_frame"]), int(row["end_frame"]),
                       float(row["fps"]))
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{where}: a clip row needs id, video, start_frame, end_frame and fps "
                             f"(written by `divot data episodes`): {err}") from None


def uniform_frame_indices(first: int, last: int, num: int = NUM_FRAMES) -> np.ndarray:
    """``num`` frames spread over [first, last): the centre of each of ``num`` equal parts, int64 (num,)."""
    return first + np.floor((np.arange(num) + 0.5) * (last - first) / num).astype(np.int64)


def jpeg_data_url(frame: np.ndarray, max_side: int = MAX_SIDE, quality: int = JPEG_QUALITY) -> str:
    """uint8 (h, w, 3) -> ``data:image/jpeg;base64,...``, shrunk so that its long side is at most ``max_side``."""
    from PIL import Image

    image = Image.fromarray(frame)
    if max(image.size) > max_side:
        scale = max_side / max(image.size)
        image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                             Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


class OpenAICaptioner:
    """Captions from an OpenAI-compatible vision endpoint (see the module docstring)."""

    def __init__(self, url: str, model: str, prompt: str = CAPTION_PROMPT, num_frames: int = NUM_FRAMES,
                 max_side: int = MAX_SIDE, api_key_env: str | None = "OPENAI_API_KEY", max_tokens: int = 120):
        if num_frames < 1:
            raise ValueError(f"num_frames must be >= 1, got {num_frames}")
        self.client = ChatClient(url, model, api_key_env=api_key_env, max_tokens=max_tokens)
        self.prompt = prompt.format(num_frames=num_frames)
        self.num_frames, self.max_side = num_frames, max_side
        self.key = f"openai:{model}@{self.client.url}#{_prompt_tag(self.prompt)}"

    @property
    def identity(self) -> dict:
        return {**self.client.identity, "prompt": self.prompt, "num_frames": self.num_frames,
                "frames": f"image_url parts, JPEG data URLs, long side <= {self.max_side} px, quality {JPEG_QUALITY}"}

    def frame_indices(self, clip: ClipRef) -> np.ndarray:
        return uniform_frame_indices(clip.start_frame, clip.end_frame, self.num_frames)

    @property
    def short_side(self) -> int:
        """Frames are decoded no larger than needed: short side ``max_side`` (the long side is shrunk later)."""
        return self.max_side

    def caption_frames(self, frames: list[np.ndarray]) -> list[str]:
        """One caption per clip; ``frames[i]`` uint8 (num_frames, h, w, 3)."""
        captions = []
        for clip_frames in frames:
            images = [{"type": "image_url", "image_url": {"url": jpeg_data_url(f, self.max_side)}}
                      for f in clip_frames]
            messages = [{"role": "user", "content": [{"type": "text", "text": self.prompt}, *images]}]
            captions.append(self.client.complete(messages).strip())
        return captions


class DivotCaptioner:
    """Captions from a Divot model (``Divot.caption``, greedy) on each clip's 16 frames."""

    def __init__(self, model: str, device=None, instruction: str | None = None, max_new_tokens: int = 32,
                 batch_size: int = 16):
        from divot import Divot
        from divot.chat.bundled import resolve_model_path

        self.name, self.path = str(model), resolve_model_path(model).resolve()
        self.model = Divot.from_pretrained(model, device=device)
        self.instruction, self.max_new_tokens, self.batch_size = instruction, max_new_tokens, batch_size
        self.key = f"divot:{self.name}" + (f"#{_prompt_tag(instruction)}" if instruction else "")

    @property
    def identity(self) -> dict:
        import divot

        prompt = self.instruction or "the pretraining caption prompt: <s> <vid> clip tokens </vid>"
        return {"kind": "divot", "model": self.name, "path": str(self.path), "divot_version": divot.__version__,
                "prompt": prompt, "greedy": True, "max_new_tokens": self.max_new_tokens}

    def frame_indices(self, clip: ClipRef) -> np.ndarray:
        return window_clip_indices(clip.start_frame, clip.end_frame, clip.fps)

    @property
    def short_side(self) -> int:
        return self.model.tokenizer.config.frame_size

    def caption_frames(self, frames: list[np.ndarray]) -> list[str]:
        """One caption per clip; ``frames[i]`` uint8 (16, h, w, 3), read as one 2-second clip at 8 fps."""
        texts = self.model.caption(list(frames), self.instruction, greedy=True, max_new_tokens=self.max_new_tokens,
                                   batch_size=self.batch_size)
        return [t.strip() for t in texts]


def _read_rows(path: Path) -> list[dict]:
    """The rows of a JSONL file; a broken last line (an interrupted append) is dropped."""
    if not path.is_file():
        return []
    rows = []
    lines = path.read_text().splitlines()
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            if n < len(lines):
                raise ValueError(f"{path}:{n}: not valid JSON") from None
            logger.warning("%s: dropping an unfinished last line", path)
    return rows


def _identity_with_earlier(captioner, summary_path: Path) -> dict:
    """The captioner's identity; what a server reported in earlier runs of the same captioner (whose captions
    were kept) is added to what it reported in this one."""
    identity = captioner.identity
    try:
        earlier = json.loads(summary_path.read_text())
    except (OSError, json.JSONDecodeError):
        return identity
    if earlier.get("captioner_key") == captioner.key:
        for key in ("served_model", "system_fingerprint"):
            if key in identity:
                identity[key] = sorted({*identity[key], *earlier.get("captioner", {}).get(key, [])})
    return identity


def _clip_key(row: dict) -> tuple:
    return row.get("video"), row.get("start_frame"), row.get("end_frame")


def _prompt_tag(prompt: str) -> str:
    import hashlib

    return hashlib.sha1(prompt.encode()).hexdigest()[:8]


def read_clip_rows(path: str | Path) -> list[dict]:
    """The clip rows of a ``metadata.jsonl`` written by ``divot data episodes`` (checked: ids, frames)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"clip metadata not found: {path} (run `divot data episodes` first)")
    rows = _read_rows(path)
    for n, row in enumerate(rows, start=1):
        ClipRef.from_row(row, f"{path}:{n}")
    return rows


def caption_clips(out_dir: str | Path, captioner, progress: bool = True) -> dict:
    """Caption every clip of ``out_dir/metadata.jsonl`` with ``captioner`` (``DivotCaptioner`` or
    ``OpenAICaptioner``) -> ``captions.jsonl`` + ``captions.json`` (returned)."""
    from tqdm import tqdm

    from divot.data.decoders import VideoDecodeError
    from divot.data.episodes.splitter import METADATA
    from divot.data.video import read_frames
    from divot.hub import atomic_write_text

    out_dir = Path(out_dir)
    rows = read_clip_rows(out_dir / METADATA)
    started = time.perf_counter()
    current = {row["id"]: _clip_key(row) for row in rows}
    done = {}  # captions of this captioner for clips as they are now (a re-split clip is captioned again)
    for row in _read_rows(out_dir / CAPTIONS) + _read_rows(out_dir / PARTIAL):
        if row.get("captioner") == captioner.key and row.get("caption") and \
                current.get(row.get("id")) == _clip_key(row):
            done[row["id"]] = row
    resumed = sum(row["id"] in done for row in rows)
    todo: list[tuple[str, list[dict]]] = []  # (video, up to CHUNK_CLIPS of its rows still to caption), in order
    for row in rows:
        if row["id"] not in done:
            if not todo or todo[-1][0] != row["video"] or len(todo[-1][1]) == CHUNK_CLIPS:
                todo.append((row["video"], []))
            todo[-1][1].append(row)
    empty, unreadable = [], []
    partial = out_dir / PARTIAL
    with partial.open("a") as sink, tqdm(total=len(rows) - resumed, desc="captions", unit="clip",
                                         disable=not progress) as bar:
        for video, video_rows in todo:
            clips = [ClipRef.from_row(r, str(out_dir / METADATA)) for r in video_rows]
            indices = [captioner.frame_indices(c) for c in clips]
            try:  # one decode per chunk of an episode's clips: every frame they need
                frames = read_frames(video, np.concatenate(indices), short_side=captioner.short_side)
            except (VideoDecodeError, OSError, ValueError) as err:
                logger.warning("skipping %d clip(s) of unreadable %s: %s", len(clips), video, err)
                unreadable.extend(c.id for c in clips)
                bar.update(len(clips))
                continue
            bounds = np.cumsum([0, *(len(i) for i in indices)])
            per_clip = [frames[bounds[i]: bounds[i + 1]] for i in range(len(clips))]
            for row, caption in zip(video_rows, captioner.caption_frames(per_clip), strict=True):
                if not caption:
                    empty.append(row["id"])
                    continue
                done[row["id"]] = {**row, "caption": caption, "captioner": captioner.key}
                sink.write(json.dumps(done[row["id"]]) + "\n")
            sink.flush()
            bar.update(len(clips))
    captioned = [done[row["id"]] for row in rows if row["id"] in done]
    atomic_write_text(out_dir / CAPTIONS, "".join(json.dumps(r) + "\n" for r in captioned))
    partial.unlink(missing_ok=True)
    summary = {"captions": str((out_dir / CAPTIONS).resolve()), "captioner_key": captioner.key,
               "captioner": _identity_with_earlier(captioner, out_dir / SUMMARY),
               "num_clips": len(rows), "num_captioned": len(captioned) - resumed, "num_resumed": resumed,
               "num_empty": len(empty), "empty": empty, "num_unreadable": len(unreadable), "unreadable": unreadable,
               "seconds": round(time.perf_counter() - started, 3)}
    atomic_write_text(out_dir / SUMMARY, json.dumps(summary, indent=1) + "\n")
    return summary
