"""``build_token_cache``: encode each video's clips once and append them to a token cache, resumably."""

from __future__ import annotations

import json
import logging
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from divot.constants import MAX_CLIPS, NUM_SPARSE_FRAMES
from divot.data.datasets import VideoItem, read_annotations
from divot.data.loading import clip_indices_of, load_chosen_clips, load_indexed_clips
from divot.data.sampling import sparse_indices
from divot.data.stories import StorySegment, segment_indices_for
from divot.data.token_cache.format import (
    FORMAT,
    SUMMARY_NAME,
    VERSION,
    check_token_dtype,
    tokenizer_identity,
    tokens_to_storage,
)
from divot.data.token_cache.ranks import merge_rank_parts, rank_dir
from divot.data.token_cache.reader import TokenCache
from divot.data.token_cache.writer import ShardWriter
from divot.data.video import VideoDecodeError, list_videos
from divot.distributed import all_gather, barrier, rank_world, shard
from divot.hub import atomic_write_text

logger = logging.getLogger(__name__)

# What "cannot read this video" looks like; anything else (a tokenizer bug, out of memory) stops the build.
_UNREADABLE = (VideoDecodeError, FileNotFoundError, OSError, ValueError)


@dataclass(frozen=True)
class CacheItem:
    video_id: str
    path: Path
    segment: StorySegment | None = None  # a story segment: one clip from its [start, end) window


def cache_items(videos, video_root: str | Path | None = None) -> list[CacheItem]:
    """The videos to cache, each with its id.

    ``videos``: a folder (every video in it, recursively; id = the path relative to the folder without its
    suffix, i.e. the file stem for a flat folder), an annotation file (.jsonl / .json / .csv, see
    ``read_annotations``; id = the record's ``id`` / ``video_id`` / ``q_uid`` / ``videoid``, else the file
    stem), a story file (.jsonl with ``segments``, DESIGN section 10: one clip per segment, id ``story#k``, see
    ``divot.data.stories``), or a sequence of paths, ``VideoItem`` or ``CacheItem``. Repeated (id, path) pairs
    are kept once; one id naming two different files is a ValueError.
    """
    if isinstance(videos, (str, Path)):
        source = Path(videos)
        if not source.exists():
            raise FileNotFoundError(f"videos not found: {source}")
        if source.is_dir():
            paths = list_videos(source, recursive=True)
            if not paths:
                raise ValueError(f"no video files in folder {source}")
            items = [CacheItem(p.relative_to(source).with_suffix("").as_posix(), p) for p in paths]
        else:
            items = [_as_item(it) for it in read_annotations(source, video_root)]
    else:
        items = [_as_item(v) for v in videos]
        if not items:
            raise ValueError("no videos to cache (empty list)")
    unique: dict[str, CacheItem] = {}
    for item in items:
        seen = unique.setdefault(item.video_id, item)
        if (seen.path, seen.segment) != (item.path, item.segment):
            raise ValueError(f"video id {item.video_id!r} names two files: {seen.path} and {item.path}")
    return list(unique.values())


def _as_item(video) -> CacheItem:
    if isinstance(video, CacheItem):
        return video
    if isinstance(video, VideoItem):
        return CacheItem(video.video_id or video.path.stem, video.path, video.segment)
    return CacheItem(Path(video).stem, Path(video))


class _DecodedVideos(Dataset):
    """Item i -> {"index", "frame_indices" (clips, 16), "clips" (clips, 5, 3, S, S)} or {"index", "error"}."""

    def __init__(self, items: list[CacheItem], frame_size: int, max_clips: int):
        self.items, self.frame_size, self.max_clips = items, frame_size, max_clips

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        item = self.items[i]
        path = item.path
        try:
            if item.segment is not None:
                dense = segment_indices_for(item.segment)  # (1, 16): the segment's window
                clips = load_indexed_clips(path, sparse_indices(dense), self.frame_size)  # (clips, 5, 3, S, S)
            else:  # the one deterministic policy, the file opened once
                dense, clips = load_chosen_clips(path, lambda info: clip_indices_of(info, self.max_clips),
                                                 self.frame_size, sparse=True)
        except _UNREADABLE as err:
            return {"index": i, "error": " ".join(str(err).split()) or type(err).__name__}
        return {"index": i, "frame_indices": dense.astype(np.int32), "clips": clips}


def _identity(sample):
    return sample


@dataclass
class _Pending:
    """A decoded video whose clips are waiting to be tokenized."""

    item: CacheItem
    frame_indices: np.ndarray
    tokens: list[torch.Tensor] = field(default_factory=list)


def build_token_cache(tokenizer, videos, out_dir: str | Path, *, max_clips: int = MAX_CLIPS, batch_size: int = 8,
                      precision: str = "auto", token_dtype: str = "float32", shard_size: int = 64,
                      limit: int | None = None, num_workers: int = 0, video_root: str | Path | None = None,
                      tokenizer_source: str | None = None, progress: bool = True) -> dict:
    """Tokenize every clip of every video not yet in the cache at ``out_dir``; returns the run's summary.

    Clips follow the deterministic sampling policy (``tokenizer.encode_video`` gives the same tokens);
    clips of consecutive videos share batches of ``batch_size`` on the tokenizer's device. Every
    ``shard_size`` videos a shard is committed, so an interrupted build loses at most that many and a rerun
    continues. Videos that cannot be read are logged, skipped and counted (and retried by the next run).
    ``limit`` caches only the first ``limit`` videos of the list; ``num_workers`` decode in background
    processes. The summary (also ``summary.json``) holds the tokenizer identity, the token shape and counts:
    ``cached`` (this run), ``skipped``, ``already_present``, ``remaining`` (beyond ``limit``).

    In a process group (``torchrun``, ``divot.distributed``) every rank encodes every world-th video into its
    part cache and rank 0 merges them (``divot.data.token_cache.ranks``); every rank returns the summary.
    """
    for name, value in (("max_clips", max_clips), ("batch_size", batch_size), ("shard_size", shard_size)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    check_token_dtype(token_dtype)
    if tokenizer.config.num_frames != NUM_SPARSE_FRAMES:
        raise ValueError(f"the tokenizer must read {NUM_SPARSE_FRAMES} sparse frames per clip, its config says "
                         f"{tokenizer.config.num_frames}")
    listed = cache_items(videos, video_root)
    items = listed if limit is None else listed[:limit]
    identity = {**tokenizer_identity(tokenizer), "source": str(tokenizer_source or "")}
    q, d = tokenizer.config.num_tokens, tokenizer.config.token_dim
    out_dir = Path(out_dir)
    rank, world = rank_world()
    start = time.perf_counter()
    counts = {"listed": len(listed), "requested": len(items), "cached": 0, "clips_cached": 0, "skipped": 0,
              "already_present": 0, "remaining": len(listed) - len(items)}
    skipped_now: list[dict] = []
    settings = (identity, q, d, token_dtype, max_clips)
    encode = dict(frame_size=tokenizer.config.frame_size, max_clips=max_clips, batch_size=batch_size,
                  precision=precision, token_dtype=token_dtype, shard_size=shard_size, num_workers=num_workers,
                  progress=progress and rank == 0)
    order = [it.video_id for it in items]
    was_training = tokenizer.training
    tokenizer.eval()
    try:
        with ExitStack() as stack:
            writer = None
            if rank == 0:  # holds the cache's lock for the whole build
                writer = stack.enter_context(ShardWriter(out_dir, *settings))
                merge_rank_parts(writer, order, shard_size)  # what a killed multi-process build left
            barrier()
            cached = writer.cached_ids if writer is not None else set(TokenCache(out_dir).ids())
            counts["already_present"] = sum(it.video_id in cached for it in items)
            todo = [it for it in shard(items, rank, world) if it.video_id not in cached]
            if world == 1:
                _encode_videos(tokenizer, writer, todo, counts, skipped_now, **encode)
            else:
                with ShardWriter(rank_dir(out_dir, rank), *settings) as part:
                    _encode_videos(tokenizer, part, todo, counts, skipped_now, **encode)
                gathered = all_gather((counts, skipped_now))  # also waits until every part is complete
                if writer is None:
                    barrier()  # rank 0 merges and writes the summary
                    return json.loads((out_dir / SUMMARY_NAME).read_text())
                for key in ("cached", "clips_cached", "skipped"):
                    counts[key] = sum(c[key] for c, _ in gathered)
                position = {video_id: i for i, video_id in enumerate(order)}
                skipped_now = sorted((r for _, s in gathered for r in s), key=lambda r: position[r["video_id"]])
                merge_rank_parts(writer, order, shard_size)
            counts["videos_in_cache"], counts["clips_in_cache"] = writer.num_rows, writer.num_clips
            counts["skipped_in_cache"] = len(writer.manifest["skipped"])
    finally:
        tokenizer.train(was_training)
    seconds = time.perf_counter() - start
    summary = {
        "format": FORMAT, "version": VERSION, "out_dir": str(out_dir),
        "videos": str(videos) if isinstance(videos, (str, Path)) else f"{len(listed)} paths",
        "tokenizer": identity, "token_shape": [q, d], "token_dtype": token_dtype, "max_clips": max_clips,
        "precision": precision, "batch_size": batch_size, "shard_size": shard_size, "limit": limit,
        "counts": counts, "skipped": skipped_now, "seconds": round(seconds, 3),
        "videos_per_second": round(counts["cached"] / seconds, 3) if seconds > 0 else None,
        "clips_per_second": round(counts["clips_cached"] / seconds, 3) if seconds > 0 else None,
        "parallel": {"world_size": world, "num_workers": num_workers},
    }
    atomic_write_text(out_dir / SUMMARY_NAME, json.dumps(summary, indent=1) + "\n")
    barrier()
    logger.info("token cache %s: %d videos cached (%d clips), %d skipped, %d already present; %d videos in the "
                "cache (%.1f s, %.2f videos/s)", out_dir, counts["cached"], counts["clips_cached"],
                counts["skipped"], counts["already_present"], counts["videos_in_cache"], seconds,
                summary["videos_per_second"] or 0.0)
    return summary


def _encode_videos(tokenizer, writer: ShardWriter, todo: list[CacheItem], counts: dict, skipped_now: list[dict], *,
                   frame_size: int, max_clips: int, batch_size: int, precision: str, token_dtype: str,
                   shard_size: int, num_workers: int, progress: bool) -> None:
    """Decode (in ``num_workers`` processes), tokenize in batches and add every video of ``todo`` to
    ``writer`` in order, committing a shard every ``shard_size`` rows; unreadable videos are recorded."""
    queue: list[tuple[_Pending, torch.Tensor]] = []  # clips waiting for a batch: (owner, (5, 3, S, S))

    def encode(n: int) -> None:
        batch = torch.stack([clip for _, clip in queue[:n]])  # (n, 5, 3, S, S)
        owners = [owner for owner, _ in queue[:n]]
        del queue[:n]
        tokens = tokenizer.encode(batch, batch_size=n, precision=precision)  # (n, q, d) float32
        for owner, tok in zip(owners, tokens, strict=True):
            owner.tokens.append(tok)
            if len(owner.tokens) == len(owner.frame_indices):
                writer.add(owner.item.video_id, str(owner.item.path), owner.frame_indices,
                           tokens_to_storage(torch.stack(owner.tokens), token_dtype))
                counts["cached"] += 1
                counts["clips_cached"] += len(owner.frame_indices)

    decoded = _DecodedVideos(todo, frame_size, max_clips)
    loader = (DataLoader(decoded, batch_size=None, num_workers=min(num_workers, len(todo)), collate_fn=_identity)
              if num_workers > 0 and todo else (decoded[i] for i in range(len(decoded))))
    bar = tqdm(loader, total=len(todo), desc="cache tokens", unit="video", disable=not progress)
    try:
        for sample in bar:
            item = todo[sample["index"]]
            if "error" in sample:
                logger.warning("skipping unreadable video %s: %s", item.path, sample["error"])
                writer.skip(item.video_id, str(item.path), sample["error"])
                skipped_now.append({"video_id": item.video_id, "video": str(item.path), "error": sample["error"]})
                counts["skipped"] += 1
            else:
                owner = _Pending(item, sample["frame_indices"])
                queue.extend((owner, clip) for clip in sample["clips"])
                while len(queue) >= batch_size:
                    encode(batch_size)
            while writer.num_pending >= shard_size:  # a shard every shard_size videos, as a merge of ranks does
                writer.commit(shard_size)
            bar.set_postfix(cached=counts["cached"], skipped=counts["skipped"], refresh=False)
        if queue:
            encode(len(queue))
        while writer.num_pending >= shard_size:
            writer.commit(shard_size)
        writer.commit()
    finally:
        bar.close()
