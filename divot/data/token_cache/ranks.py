"""A token cache built by several ranks (``torchrun``): each rank writes its share into its own part cache,
``ranks/rank-<r>/`` inside the cache folder (the same format, its own lock and shards, so a killed rank keeps
what it committed), and rank 0 folds the parts into the cache with ``merge_rank_parts``.

The merge adds the parts' rows in the order of the video list and commits a shard every ``shard_size`` rows,
as a one-process build does, so a fresh build gives the same manifest, shards and skipped list whatever the
number of ranks. Rank 0 also merges at the start of a build: the parts a killed build left are kept.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from divot.data.token_cache.format import MANIFEST_NAME, RANKS_DIR, tokens_to_storage
from divot.data.token_cache.writer import ShardWriter

logger = logging.getLogger(__name__)


def rank_dir(out_dir: Path, rank: int) -> Path:
    return Path(out_dir) / RANKS_DIR / f"rank-{rank:05d}"


def merge_rank_parts(writer: ShardWriter, order: list[str], shard_size: int) -> int:
    """Move the rows and skipped videos of every part cache under ``writer``'s folder into it (ids in the
    order of ``order``, others after), committing every ``shard_size`` rows; remove the parts. Returns the
    number of rows added. ``writer`` is the open cache (rank 0, while no rank is building)."""
    from divot.data.token_cache.reader import TokenCache

    root = writer.out_dir / RANKS_DIR
    parts = sorted(p for p in root.glob("rank-*") if p.is_dir()) if root.is_dir() else []
    if not parts:
        return 0
    s = writer.settings
    rows: dict[str, tuple[TokenCache, str]] = {}
    skipped: dict[str, dict] = {}
    for part in parts:
        if not (part / MANIFEST_NAME).is_file():
            continue  # a rank stopped before writing anything
        # opening it as a writer takes its lock, adopts a shard its rank renamed but did not record, and
        # checks that it was built by the same tokenizer with the same settings
        with ShardWriter(part, writer.identity, s["num_tokens"], s["token_dim"], s["token_dtype"], s["max_clips"]):
            pass
        cache = TokenCache(part)
        for video_id in cache.ids():
            rows.setdefault(video_id, (cache, video_id))
        for video_id, entry in cache.skipped.items():
            skipped.setdefault(video_id, entry)
    ids = [i for i in order if i in rows or i in skipped]
    listed = set(ids)
    ids += [i for i in list(rows) + list(skipped) if i not in listed]
    added = 0
    for video_id in dict.fromkeys(ids):
        if video_id in writer.cached_ids:
            continue
        if video_id in rows:
            cache, _ = rows[video_id]
            row = cache.row(video_id)
            writer.add(video_id, row["video"], row["frame_indices"].numpy(),
                       tokens_to_storage(row["tokens"], s["token_dtype"]))
            added += 1
            while writer.num_pending >= shard_size:
                writer.commit(shard_size)
        else:
            writer.skip(video_id, skipped[video_id]["video"], skipped[video_id]["error"])
    writer.commit()
    rows.clear()
    shutil.rmtree(root)
    logger.info("token cache %s: merged %d videos from %d rank parts", writer.out_dir, added, len(parts))
    return added
