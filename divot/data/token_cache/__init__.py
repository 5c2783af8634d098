"""The token cache: every clip of every video encoded once by a frozen tokenizer, stored as Arrow shards.

Training the LLM and evaluating it read clip tokens from here instead of re-running the ViT (DESIGN section 6,
last bullet). ``build_token_cache`` writes (resumably); ``TokenCache`` reads by video id.

On disk (``out_dir``)::

    manifest.json        format, version, tokenizer identity, token shape and dtype, max_clips, the committed
                         shards (file, rows, clips) and the videos that could not be read (id -> path, error)
    shard-00000.arrow    Arrow files written by ``datasets``' ArrowWriter, each renamed into place when
    shard-00001.arrow    complete; one row per video (columns below)
    skipped.jsonl        one line per unreadable video: {video_id, video, error}
    summary.json         the last run: tokenizer identity, token shape, counts (cached / skipped / already
                         present / remaining), speed
    .lock                held (flock) while a build runs

Row columns: ``video_id`` (string), ``video`` (path as given), ``num_clips`` (int32), ``clip_index``
(list of int32, 0 .. num_clips-1), ``frame_indices`` (Array2D (clips, 16) int32: native dense frame
numbers of each clip, from the one sampling policy), ``tokens`` (Array3D (clips, q, d): float32, or the
bit patterns of bfloat16 stored as int16 when ``token_dtype="bfloat16"``).

A shard becomes part of the cache when the manifest lists it; the manifest is rewritten atomically after
each shard, so a killed build loses at most the shard it was filling, and a rerun skips every cached id.
"""

from divot.data.token_cache.build import CacheItem, build_token_cache, cache_items
from divot.data.token_cache.format import NotATokenCacheError, TokenizerMismatchError, tokenizer_identity
from divot.data.token_cache.reader import TokenCache

__all__ = [
    "CacheItem",
    "NotATokenCacheError",
    "TokenCache",
    "TokenizerMismatchError",
    "build_token_cache",
    "cache_items",
    "tokenizer_identity",
]
