"""Training data: annotation files -> video items -> random 2-second clips, with a resumable sampler.

Annotation sources (``read_annotations``):
  * a folder of videos (every video file in it),
  * a JSONL / JSON list of records with ``video`` (or ``path``), optional ``caption``, ``attributes`` and
    ``split`` (the shapes world's ``metadata.jsonl``), and optional ``start`` / ``end`` seconds: a clip window
    of a longer video (``divot data episodes``), read like a story segment's window,
  * a CSV with a ``video`` / ``path`` column, or WebVid's ``videoid`` + ``page_dir`` columns
    (``{video_root}/{page_dir}/{videoid}.mp4``) and ``name`` as the caption,
  * a story file (DESIGN section 10, ``divot.data.stories``): one item per segment, its clip taken from the
    segment's [start, end) window, its text as the caption (e.g. de-tokenizer fine-tuning on story videos).
Relative paths resolve against ``video_root`` (default: the annotation file's folder).

Unreadable videos never stop a run: ``ClipDataset`` returns ``None`` for them and ``collate_clips`` drops
them and counts them in the batch (``num_skipped``).
"""

from __future__ import annotations

import csv
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from divot.constants import DENSE_FRAMES, MAX_CLIPS, SPARSE_INDICES
from divot.data.loading import clip_indices_of, load_chosen_clips, load_indexed_clips
from divot.data.stories import StorySegment, is_story_file, read_stories, segment_indices_for
from divot.data.video import VideoDecodeError, list_videos

logger = logging.getLogger(__name__)


@dataclass
class VideoItem:
    path: Path
    caption: str | None = None
    labels: dict = field(default_factory=dict)  # e.g. the first object's shape / colour / motion
    split: str | None = None
    video_id: str | None = None  # the record's id (``id`` / ``video_id`` / ``q_uid`` / WebVid ``videoid``)
    segment: StorySegment | None = None  # a story segment: the clip comes from its [start, end) window


def read_annotations(source: str | Path, video_root: str | Path | None = None,
                     split: str | None = None) -> list[VideoItem]:
    """Video items from a folder, a JSONL / JSON or a CSV file (see the module docstring)."""
    source = Path(source)
    if not source.exists():
        raise FileNotFoundError(f"training data not found: {source}")
    if source.is_dir():
        items = [VideoItem(p) for p in list_videos(source, recursive=True)]
    elif is_story_file(source):
        items = [_segment_item(story, k, video_root) for story in read_stories(source, video_root)
                 for k in range(len(story.segments))]
    else:
        root = Path(video_root) if video_root else source.parent
        records = _read_records(source)
        items = [_item(r, root, f"{source}:{i + 1}") for i, r in enumerate(records)]
    if split is not None:
        items = [it for it in items if it.split == split]
    if not items:
        raise ValueError(f"no videos in {source}" + (f" with split {split!r}" if split else ""))
    return items


def _read_records(path: Path) -> list[dict]:
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        with path.open() as f:
            return [json.loads(line) for line in f if line.strip()]
    if suffix == ".json":
        data = json.loads(path.read_text())
        if not isinstance(data, list):
            raise ValueError(f"{path}: expected a JSON list of records")
        return data
    if suffix in (".csv", ".tsv"):
        with path.open(newline="") as f:
            return list(csv.DictReader(f, delimiter="\t" if suffix == ".tsv" else ","))
    raise ValueError(f"unsupported annotation file {path} (use a folder, .jsonl, .json, .csv or .tsv)")


_ID_KEYS = ("id", "video_id", "q_uid", "videoid")


def _item(record: dict, root: Path, where: str) -> VideoItem:
    if "video" in record or "path" in record:
        rel = Path(record.get("video") or record["path"])
    elif "videoid" in record:  # WebVid
        rel = Path(record.get("page_dir", "")) / f"{record['videoid']}.mp4"
    else:
        raise ValueError(f"{where}: a record needs 'video', 'path' or WebVid's 'videoid'; got keys {sorted(record)}")
    attrs = record.get("attributes") or []
    labels = dict(attrs[0]) if attrs and isinstance(attrs[0], dict) else {}
    video_id = next((str(record[k]) for k in _ID_KEYS if record.get(k) not in (None, "")), None)
    path, caption = rel if rel.is_absolute() else root / rel, record.get("caption") or record.get("name")
    return VideoItem(path=path, caption=caption, labels=labels, split=record.get("split"), video_id=video_id,
                     segment=_window(record, path, caption, where))


def _window(record: dict, path: Path, caption: str | None, where: str) -> StorySegment | None:
    """A record with ``start`` / ``end`` (seconds) is a clip window of a longer video (``divot data episodes``'
    metadata): its clip comes from that window, as a story segment's does."""
    bounds = [record.get("start"), record.get("end")]
    if all(b in (None, "") for b in bounds):
        return None
    try:
        start, end = (None if b in (None, "") else float(b) for b in bounds)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: 'start' / 'end' must be seconds, got {bounds}") from None
    if (start is not None and start < 0) or (start is not None and end is not None and end <= start):
        raise ValueError(f"{where}: expected 0 <= start < end seconds, got start={start}, end={end}")
    return StorySegment(caption or "", path, start, end)


def _segment_item(story, k: int, video_root) -> VideoItem:
    segment = story.segments[k]
    attrs = story.extra.get("attributes")
    labels = {}
    if isinstance(attrs, list) and k < len(attrs) and attrs[k] and isinstance(attrs[k][0], dict):
        labels = dict(attrs[k][0])  # the shapes world: the subject's attributes in that clip
    return VideoItem(segment.video, segment.text, labels, story.extra.get("split"), story.segment_id(k), segment)


class ClipDataset(Dataset):
    """Item i -> ``{"dense": (16, 3, S, S), "sparse": (5, 3, S, S), "index": i}`` in [-1, 1], or None when
    the video cannot be read.

    With ``random_window`` the clip is a random 2-second window (one of the sampler's clips, start jittered),
    drawn from a generator seeded by (seed, epoch, i): the same item in the same epoch is the same clip, which
    keeps resumed runs exact whatever the worker count. Without it, the first clip of the evaluation policy.

    ``channel_shuffle`` (a training augmentation) reorders the RGB channels of each clip by one of the six
    permutations, drawn from the same kind of generator; on the shapes world's palette it maps a colour onto
    another palette colour, so the tokenizer sees every shape in every colour.
    """

    def __init__(self, items: list[VideoItem], frame_size: int, seed: int = 0, random_window: bool = True,
                 channel_shuffle: bool = False):
        self.items = items
        self.frame_size = frame_size
        self.seed = seed
        self.random_window = random_window
        self.channel_shuffle = channel_shuffle
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.items)

    def _window_chooser(self, i: int):
        """``VideoInfo`` -> the (1, 16) native indices of item ``i``'s clip: a random window (seeded by seed,
        epoch and item) or the first one of the deterministic policy."""
        if not self.random_window:
            return lambda info: clip_indices_of(info, 1)

        def choose(info):
            rng = np.random.default_rng([self.seed, self.epoch, i])
            windows = clip_indices_of(info, MAX_CLIPS, rng)  # (clips, 16)
            return windows[rng.integers(len(windows))][None]
        return choose

    def __getitem__(self, i: int) -> dict | None:
        item = self.items[i]
        try:
            if item.segment is not None:
                indices = segment_indices_for(item.segment)  # (1, 16): the segment's own clip
                dense = load_indexed_clips(item.path, indices, self.frame_size)[0]  # (16, 3, S, S)
            else:
                _, dense = load_chosen_clips(item.path, self._window_chooser(i), self.frame_size)
                dense = dense[0]  # (16, 3, S, S); the file opened once

        except (VideoDecodeError, FileNotFoundError, OSError, ValueError) as e:
            logger.warning("skipping unreadable video %s: %s", item.path, e)
            return None
        if dense.shape[0] != DENSE_FRAMES:
            logger.warning("skipping %s: got %d frames, expected %d", item.path, dense.shape[0], DENSE_FRAMES)
            return None
        if self.channel_shuffle:
            order = np.random.default_rng([self.seed, self.epoch, i, 1]).permutation(3)
            dense = dense[:, torch.as_tensor(order)]
        return {"dense": dense, "sparse": dense[list(SPARSE_INDICES)], "index": i}


def collate_clips(samples: list[dict | None]) -> dict:
    """Stack the readable samples; ``num_items`` counts all, ``num_skipped`` the unreadable ones."""
    good = [s for s in samples if s is not None]
    batch: dict = {"num_items": len(samples), "num_skipped": len(samples) - len(good)}
    if good:
        for key in good[0]:
            values = [s[key] for s in good]
            batch[key] = torch.stack(values) if isinstance(values[0], torch.Tensor) else torch.tensor(values)
    return batch


class ResumableSampler(Sampler[int]):
    """A shuffled pass over ``num_items`` per epoch, split across ranks, that can start mid-epoch.

    ``set_position(epoch, offset)`` makes the next iteration yield this rank's indices of ``epoch`` from
    position ``offset`` on; the permutation depends only on (seed, epoch).
    """

    def __init__(self, num_items: int, seed: int = 0, rank: int = 0, world_size: int = 1, shuffle: bool = True):
        if num_items < 1:
            raise ValueError("the sampler needs at least one item")
        self.num_items, self.seed, self.rank, self.world_size, self.shuffle = num_items, seed, rank, world_size, shuffle
        self.epoch, self.offset = 0, 0

    def set_position(self, epoch: int, offset: int) -> None:
        self.epoch, self.offset = epoch, offset

    def _order(self) -> list[int]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 100003 + self.epoch)
            order = torch.randperm(self.num_items, generator=g).tolist()
        else:
            order = list(range(self.num_items))
        per_rank = -(-self.num_items // self.world_size)
        order = (order * (1 + per_rank * self.world_size // self.num_items))[: per_rank * self.world_size]
        return order[self.rank :: self.world_size]

    def __len__(self) -> int:
        return max(0, -(-self.num_items // self.world_size) - self.offset)

    def __iter__(self):
        return iter(self._order()[self.offset :])
