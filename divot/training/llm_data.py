"""Training data of the Divot-LLM: annotation records + cached clip tokens -> sequences, as a weighted mixture.

The mixture is one deterministic stream of samples: global position ``i`` lies in epoch ``i // N`` (``N`` =
records over all sources) and names a (source, record) pair drawn from the source weights with a per-epoch
seed. Global micro-batch ``g`` holds positions ``g*B .. g*B+B-1`` and is read by rank ``g % world``, so the
data position is a single number (micro-batches consumed) and ``world`` processes with accumulation ``a``
see exactly what one process with accumulation ``world * a`` sees. Every global micro-batch of the same
accumulation round uses the same sequence of sources, slot by slot, so all ranks of a step use the same
parts of the model (ZeRO-2 reduces gradients in buckets and needs the same gradients on every rank).
"""

from __future__ import annotations

import json
import logging
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from divot.data.stories import StoryRecord, read_stories
from divot.data.token_cache import TokenCache
from divot.llm.sequences import LLMSample, SequenceBuilder
from divot.training.llm_config import SourceConfig

logger = logging.getLogger(__name__)

_ID_KEYS = ("id", "video_id", "q_uid", "video_name", "videoid")


@dataclass
class Record:
    """One annotated video: its id in the token cache and its texts."""

    video_id: str
    caption: str | None = None
    turns: tuple[tuple[str, str], ...] = ()  # (question, answer) pairs
    attributes: tuple[dict, ...] = ()  # shapes world: one {shape, colour, motion} per object
    options: tuple[str, ...] = ()  # EgoSchema format: the five options
    answer_index: int | None = None


def _load(path: Path):
    if not path.is_file():
        raise FileNotFoundError(f"annotation file not found: {path}")
    if path.suffix.lower() == ".jsonl":
        with path.open() as f:
            return [json.loads(line) for line in f if line.strip()]
    if path.suffix.lower() == ".json":
        return json.loads(path.read_text())
    raise ValueError(f"unsupported annotation file {path} (use .jsonl or .json)")


def _video_id(record: dict, where: str) -> str:
    for key in _ID_KEYS:
        if record.get(key) not in (None, ""):
            return str(record[key])
    if record.get("video"):
        return Path(record["video"]).stem
    raise ValueError(f"{where}: a record needs an id ({', '.join(_ID_KEYS)}) or a 'video'; got keys {sorted(record)}")


def read_records(annotations: str | Path, answers: str | Path | None = None,
                 split: str | None = None) -> list[Record]:
    """Records of an annotation file (see ``SourceConfig``); EgoSchema questions need ``answers``."""
    path = Path(annotations)
    data = _load(path)
    if isinstance(data, dict):
        data = list(data.values()) if all(isinstance(v, dict) for v in data.values()) else None
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a list of records")
    key = {str(k): int(v) for k, v in _load(Path(answers)).items()} if answers else None
    records = []
    for i, r in enumerate(data):
        where = f"{path}:{i + 1}"
        if split is not None and r.get("split") != split:
            continue
        vid = _video_id(r, where)
        options = tuple(str(r[f"option {j}"]) for j in range(5) if f"option {j}" in r)
        answer_index = None
        turns: tuple[tuple[str, str], ...] = ()
        if options:
            if key is None or vid not in key:
                if key is not None:
                    raise ValueError(f"{where}: question {vid!r} has no entry in {answers}")
            else:
                answer_index = key[vid]
                turns = ((str(r["question"]), options[answer_index]),)
        elif "question" in r and "answer" in r:
            turns = ((str(r["question"]), str(r["answer"])),)
        attrs = r.get("attributes") or ()
        records.append(Record(vid, r.get("caption"), turns, tuple(a for a in attrs if isinstance(a, dict)),
                              options, answer_index))
    if not records:
        raise ValueError(f"no records in {path}" + (f" with split {split!r}" if split else ""))
    return records


class SampleBuilder:
    """Builds the ``LLMSample`` of a record in a given format (DESIGN section 6 table)."""

    def __init__(self, builder: SequenceBuilder, max_clips: int):
        self.builder, self.max_clips = builder, max_clips

    def __call__(self, fmt: str, record: Record | StoryRecord, tokens: torch.Tensor, rng: random.Random) -> LLMSample:
        b = self.builder
        if fmt == "story":  # tokens: (segments, q, d), one clip per segment
            return b.story(record.instruction, record.texts, tokens)
        clips = tokens[: self.max_clips]  # (clips, q, d)
        if fmt in ("caption", "image", "generation", "generation_instruction") and not record.caption:
            raise ValueError(f"video {record.video_id!r}: the {fmt} format needs a caption")
        if fmt == "caption":
            return b.caption(clips, record.caption)
        if fmt == "image":
            return self.image(clips[:1], record.caption)
        if fmt == "qa":
            if not record.turns:
                raise ValueError(f"video {record.video_id!r}: the qa format needs a question and an answer")
            return b.qa(clips, list(record.turns))
        clip = clips[rng.randrange(clips.shape[0])][None]  # (1, q, d): one clip to generate
        if fmt == "generation":
            return b.generation(record.caption, clip)
        if fmt == "generation_instruction":
            return b.generation_instruction(record.caption, clip, rng=rng)
        raise ValueError(f"unknown sequence format {fmt!r}")

    def image(self, clip: torch.Tensor, caption: str) -> LLMSample:
        """Image captioning: the caption format with ``<img>`` ... ``</img>`` around the one clip."""
        sample = self.builder.caption(clip, caption)
        ids = self.builder.ids
        sample.input_ids[sample.input_ids == ids.vid_start] = ids.img_start
        sample.input_ids[sample.input_ids == ids.vid_end] = ids.img_end
        return sample


class TokenSource:
    """A source's records that have cached tokens, with its sequence format."""

    def __init__(self, cfg: SourceConfig, stage: str, caches: dict[str, TokenCache]):
        self.cfg = cfg
        self.format = cfg.sequence_format(stage)
        self.name = cfg.name or f"{cfg.kind}:{Path(cfg.annotations).name}"
        if cfg.tokens not in caches:
            caches[cfg.tokens] = TokenCache(cfg.tokens)
        self.cache = caches[cfg.tokens]
        if self.format == "story":
            self.records = self._stories(cfg)
            return
        records = read_records(cfg.annotations, cfg.answers, cfg.split)
        usable = [r for r in records if (r.turns if self.format == "qa" else r.caption)]
        if not usable:
            need = "question + answer (EgoSchema files need 'answers')" if self.format == "qa" else "a caption"
            raise ValueError(f"{self.name}: the {self.format} format needs {need}; no record of {cfg.annotations} "
                             "has it")
        if len(usable) < len(records):
            logger.warning("%s: %d of %d records lack the texts of the %s format (skipped)", self.name,
                           len(records) - len(usable), len(records), self.format)
        records = usable
        self.records = [r for r in records if r.video_id in self.cache]
        missing = len(records) - len(self.records)
        if missing:
            logger.warning("%s: %d of %d videos are not in the token cache %s (skipped)", self.name, missing,
                           len(records), cfg.tokens)
        if not self.records:
            raise ValueError(f"{self.name}: none of the {len(records)} videos of {cfg.annotations} is in the token "
                             f"cache {cfg.tokens}")

    def _stories(self, cfg: SourceConfig) -> list[StoryRecord]:
        stories = read_stories(cfg.annotations, split=cfg.split)
        usable = [s for s in stories if all(s.segment_id(k) in self.cache for k in range(len(s.segments)))]
        if len(usable) < len(stories):
            logger.warning("%s: %d of %d stories have segments missing from the token cache %s (skipped)",
                           self.name, len(stories) - len(usable), len(stories), cfg.tokens)
        if not usable:
            raise ValueError(f"{self.name}: no story of {cfg.annotations} has all its segments in the token cache "
                             f"{cfg.tokens} (cache them with: divot cache-features --videos {cfg.annotations})")
        return usable

    def tokens(self, record: Record | StoryRecord) -> torch.Tensor:
        """The record's clip tokens: (clips, q, d), or (segments, q, d) for a story (each segment's clip)."""
        if isinstance(record, StoryRecord):
            return torch.stack([self.cache[record.segment_id(k)][0] for k in range(len(record.segments))])
        return self.cache[record.video_id]

    def __len__(self) -> int:
        return len(self.records)


class MixtureDataset(Dataset):
    """Global position -> ``LLMSample`` (see the module docstring). Indexable by any position >= 0.

    ``round_size`` = micro-batches of one optimiser step over all ranks (world x accumulation): the source of
    slot j is drawn once per round. Within an epoch each source runs through its own permutation of records.
    """

    _CHUNK = 4096  # rounds whose source draws come from one generator

    def __init__(self, sources: list[TokenSource], make_sample: SampleBuilder, seed: int, batch_size: int,
                 round_size: int):
        self.sources, self.make_sample, self.seed = sources, make_sample, seed
        self.batch_size, self.round_size = batch_size, round_size
        weights = np.array([s.cfg.weight for s in sources], dtype=np.float64)
        self.weights = weights / weights.sum()
        self.epoch_size = sum(len(s) for s in sources)
        self._draws: dict[int, np.ndarray] = {}
        self._epochs: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def __len__(self) -> int:
        return self.epoch_size

    def _round_sources(self, rounds: np.ndarray) -> np.ndarray:
        """(len(rounds), B) source indices, one row per round."""
        out = np.empty((len(rounds), self.batch_size), dtype=np.int64)
        for chunk in np.unique(rounds // self._CHUNK):
            if chunk not in self._draws:
                rng = np.random.default_rng([self.seed, 1, int(chunk)])
                if len(self._draws) > 4:
                    self._draws.pop(next(iter(self._draws)))
                self._draws[chunk] = rng.choice(len(self.sources), size=(self._CHUNK, self.batch_size),
                                                p=self.weights)
            sel = rounds // self._CHUNK == chunk
            out[sel] = self._draws[chunk][rounds[sel] % self._CHUNK]
        return out

    def _epoch(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """(source, record) index of every position of ``epoch``."""
        if epoch not in self._epochs:
            idx = np.arange(epoch * self.epoch_size, (epoch + 1) * self.epoch_size)
            rounds = idx // self.batch_size // self.round_size
            uniq, inverse = np.unique(rounds, return_inverse=True)
            src = self._round_sources(uniq)[inverse, idx % self.batch_size]
            rec = np.empty_like(src)
            rng = np.random.default_rng([self.seed, 2, epoch])
            for s, source in enumerate(self.sources):
                where = np.flatnonzero(src == s)
                rec[where] = rng.permutation(len(source))[np.arange(len(where)) % len(source)]
            if len(self._epochs) > 1:
                self._epochs.pop(min(self._epochs))
            self._epochs[epoch] = (src, rec)
        return self._epochs[epoch]

    def locate(self, i: int) -> tuple[int, int]:
        """(source index, record index) of global position ``i``."""
        epoch, pos = divmod(i, self.epoch_size)
        src, rec = self._epoch(epoch)
        return int(src[pos]), int(rec[pos])

    def __getitem__(self, i: int) -> LLMSample:
        s, r = self.locate(i)
        source = self.sources[s]
        record = source.records[r]
        rng = random.Random(f"{self.seed}-{i}")  # the template, the generated clip: fixed per position
        return self.make_sample(source.format, record, source.tokens(record), rng)


class RankBatches(Sampler[list[int]]):
    """Endless global micro-batches of this rank from micro-batch ``start`` on: ``g = start + rank``,
    ``start + rank + world``, ... (``start`` is a multiple of ``world``)."""

    def __init__(self, batch_size: int, rank: int, world: int, start: int = 0):
        self.batch_size, self.rank, self.world, self.start = batch_size, rank, world, start

    def __iter__(self):
        g = self.start + self.rank
        while True:
            yield list(range(g * self.batch_size, (g + 1) * self.batch_size))
            g += self.world
