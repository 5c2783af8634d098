"""Story files (DESIGN section 10): JSON lines of interleaved texts and video clips, validated on reading.

One story per line::

    {"instruction": "Generate a story about ...",
     "segments": [{"text": "...", "video": "path.mp4", "start": 0.0, "end": 2.0}, ...]}

``start`` / ``end`` (seconds) are optional: without them a segment is its whole video. Extra keys are kept
(``id``, the shapes world's ``attributes``); a story's id is its ``id`` (else ``story_<line>``), and segment
k of story S is the clip ``S#k`` in a token cache. Relative video paths resolve against ``video_root``
(default: the story file's folder).

Each segment becomes one 2-second clip: the clip sampler's evaluation policy (``sample_clip_indices`` with one
clip) applied to the native frames inside [start, end). ``build_story_file`` writes stories from a folder of
captioned clips (a ``metadata.jsonl``), consecutive clips forming one story.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from divot.data.sampling import sample_clip_indices
from divot.data.video import probe_video

STORY_INSTRUCTION = "Generate a story."  # build_story_file's default instruction
SEGMENT_SEPARATOR = "#"  # token-cache id of segment k of story S: f"S#{k}"


class StoryFormatError(ValueError):
    """A story file that breaks the format; the message names the file, the line and the field."""


@dataclass(frozen=True)
class StorySegment:
    text: str
    video: Path
    start: float | None = None  # seconds; None: from the video's start
    end: float | None = None  # seconds; None: to the video's end


@dataclass(frozen=True)
class StoryRecord:
    story_id: str
    instruction: str
    segments: tuple[StorySegment, ...]
    extra: dict = field(default_factory=dict, compare=False)  # other keys of the line (attributes, split ...)

    @property
    def texts(self) -> list[str]:
        return [s.text for s in self.segments]

    def segment_id(self, k: int) -> str:
        """The token-cache id of segment ``k``."""
        return segment_id(self.story_id, k)


def segment_id(story_id: str, k: int) -> str:
    return f"{story_id}{SEGMENT_SEPARATOR}{k}"


def _seconds(value, where: str, name: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise StoryFormatError(f"{where}: '{name}' must be a number of seconds >= 0, got {value!r}")
    return float(value)


def _segment(raw, root: Path, where: str) -> StorySegment:
    if not isinstance(raw, dict):
        raise StoryFormatError(f"{where}: a segment must be an object with 'text' and 'video', got {raw!r}")
    text, video = raw.get("text"), raw.get("video")
    if not isinstance(text, str) or not text.strip():
        raise StoryFormatError(f"{where}: 'text' must be a non-empty string, got {text!r}")
    if not isinstance(video, str) or not video:
        raise StoryFormatError(f"{where}: 'video' must be a path string, got {video!r}")
    start, end = _seconds(raw.get("start"), where, "start"), _seconds(raw.get("end"), where, "end")
    if start is not None and end is not None and end <= start:
        raise StoryFormatError(f"{where}: 'end' ({end}) must be after 'start' ({start})")
    path = Path(video)
    return StorySegment(text.strip(), path if path.is_absolute() else root / path, start, end)


def parse_story(record, where: str, root: Path, default_id: str) -> StoryRecord:
    """One story from a decoded JSON line; ``where`` (file:line) prefixes every error."""
    if not isinstance(record, dict):
        raise StoryFormatError(f"{where}: expected a JSON object, got {type(record).__name__}")
    instruction = record.get("instruction")
    if not isinstance(instruction, str) or not instruction.strip():
        raise StoryFormatError(f"{where}: 'instruction' must be a non-empty string, got {instruction!r}")
    segments = record.get("segments")
    if not isinstance(segments, list) or not segments:
        raise StoryFormatError(f"{where}: 'segments' must be a non-empty list, got {segments!r}")
    story_id = str(record.get("id") or default_id)
    if SEGMENT_SEPARATOR in story_id:
        raise StoryFormatError(f"{where}: 'id' must not contain {SEGMENT_SEPARATOR!r}, got {story_id!r}")
    parsed = tuple(_segment(s, root, f"{where}: segments[{k}]") for k, s in enumerate(segments))
    extra = {k: v for k, v in record.items() if k not in ("id", "instruction", "segments")}
    return StoryRecord(story_id, instruction.strip(), parsed, extra)


def read_stories(path: str | Path, video_root: str | Path | None = None, split: str | None = None) -> list[StoryRecord]:
    """Every story of a story JSONL file, validated (``StoryFormatError`` names the line and the field).

    ``split`` keeps the stories whose ``split`` key equals it. Ids must be unique. Video files are not opened
    here (a missing video is skipped and counted by whoever decodes it)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"story file not found: {path}")
    root = Path(video_root) if video_root is not None else path.parent
    stories, seen = [], {}
    with path.open() as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"{path}:{n}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise StoryFormatError(f"{where}: not valid JSON ({err.msg} at column {err.colno})") from None
            story = parse_story(record, where, root, f"story_{n}")
            if story.story_id in seen:
                raise StoryFormatError(f"{where}: story id {story.story_id!r} already used on line "
                                       f"{seen[story.story_id]}")
            seen[story.story_id] = n
            if split is None or story.extra.get("split") == split:
                stories.append(story)
    if not stories:
        raise StoryFormatError(f"no stories in {path}" + (f" with split {split!r}" if split else ""))
    return stories


def is_story_file(path: str | Path) -> bool:
    """True for a JSONL file whose first record has ``segments`` (a story file, not clip annotations)."""
    path = Path(path)
    if not path.is_file() or path.suffix.lower() != ".jsonl":
        return False
    with path.open() as f:
        for line in f:
            if line.strip():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    return False
                return isinstance(record, dict) and "segments" in record
    return False


def segment_clip_indices(num_frames: int, fps: float, start: float | None, end: float | None) -> np.ndarray:
    """Native frame indices (16,) of a segment's clip: the window [start, end) of a video of ``num_frames``
    at ``fps``, sampled by the one clip sampler (evaluation policy, one clip)."""
    first = 0 if start is None else int(math.floor(start * fps + 1e-6))
    last = num_frames if end is None else min(num_frames, int(math.ceil(end * fps - 1e-6)))
    if first >= num_frames:
        raise ValueError(f"segment starts at {start} s but the video has only {num_frames / fps:.3f} s")
    last = max(last, first + 1)
    return first + sample_clip_indices(last - first, fps, max_clips=1)[0]


def segment_indices_for(segment: StorySegment) -> np.ndarray:
    """``segment_clip_indices`` of a segment's video file: (1, 16) int64."""
    info = probe_video(segment.video)
    return segment_clip_indices(info.num_frames, info.fps, segment.start, segment.end)[None]


def _window_of(item) -> dict:
    """``start`` / ``end`` of an annotation item that is a clip window of a longer video (else nothing)."""
    seg = item.segment
    return {} if seg is None else {k: v for k, v in (("start", seg.start), ("end", seg.end)) if v is not None}


def build_story_file(metadata: str | Path, out: str | Path, segments_per_story: int = 3,
                     instruction: str = STORY_INSTRUCTION, video_root: str | Path | None = None) -> Path:
    """Stories from captioned clips: each run of ``segments_per_story`` consecutive clips of ``metadata`` (a
    JSONL / JSON / CSV with ``video`` and ``caption``, see ``divot.data.datasets.read_annotations``) becomes
    one story whose texts are the captions. Clips without a caption are left out; a shorter tail is dropped.
    Video paths are written absolute; a clip window (``start`` / ``end`` in the record) is kept. Returns ``out``."""
    from divot.data.datasets import read_annotations
    from divot.hub import atomic_write_text

    if segments_per_story < 1:
        raise ValueError(f"segments_per_story must be >= 1, got {segments_per_story}")
    items = [it for it in read_annotations(metadata, video_root) if it.caption]
    if len(items) < segments_per_story:
        raise ValueError(f"{metadata}: {len(items)} captioned clip(s), fewer than segments_per_story="
                         f"{segments_per_story}")
    lines = []
    for i in range(len(items) // segments_per_story):
        group = items[i * segments_per_story: (i + 1) * segments_per_story]
        record = {"id": f"story_{i:06d}", "instruction": instruction,
                  "segments": [{"text": it.caption, "video": str(Path(it.path).resolve()), **_window_of(it)}
                               for it in group]}
        lines.append(json.dumps(record) + "\n")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, "".join(lines))
    return out
