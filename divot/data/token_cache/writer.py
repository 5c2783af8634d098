"""``ShardWriter``: the only code that changes a token cache folder (lock, manifest, shards, skipped list).

Consistency rules: a shard is written to a temporary file and renamed into place when complete; the
manifest (rewritten atomically) is what makes it part of the cache. On opening, leftover temporary files
are removed and a complete shard that the manifest does not list yet (a build killed between the rename
and the manifest write) is adopted. An flock on ``.lock`` keeps two builds out of one folder; the kernel
drops it when a process dies, so a killed build never blocks the next.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import numpy as np
from datasets import Dataset
from datasets.arrow_writer import ArrowWriter

from divot.data.token_cache.format import (
    FORMAT,
    LOCK_NAME,
    MANIFEST_NAME,
    RANKS_DIR,
    SHARD_GLOB,
    SHARD_PATTERN,
    SKIPPED_NAME,
    SUMMARY_NAME,
    VERSION,
    check_tokenizer,
    features,
    read_manifest,
    write_manifest,
)
from divot.hub import atomic_path, atomic_write_text

try:
    import fcntl
except ImportError:  # Windows: no advisory locks, builds are trusted not to overlap
    fcntl = None

logger = logging.getLogger(__name__)

_OWN_NAMES = {MANIFEST_NAME, SUMMARY_NAME, SKIPPED_NAME, LOCK_NAME, RANKS_DIR}
_SHARD_RE = re.compile(r"shard-(\d{5,})\.arrow")
_COLUMNS = ("video_id", "video", "num_clips", "clip_index", "frame_indices", "tokens")


class ShardWriter:
    """Appends rows to the cache at ``out_dir`` in shards; use as a context manager (holds the lock)."""

    def __init__(self, out_dir: Path, identity: dict, num_tokens: int, token_dim: int, token_dtype: str,
                 max_clips: int):
        self.out_dir = Path(out_dir)
        self.settings = {"num_tokens": num_tokens, "token_dim": token_dim, "token_dtype": token_dtype,
                         "max_clips": max_clips}
        self.identity = identity
        self.features = features(num_tokens, token_dim, token_dtype)
        self.rows: dict[str, list] = {c: [] for c in _COLUMNS}
        self.cached_ids: set[str] = set()
        self._lock_file = None
        self._dirty = False

    # ------------------------------------------------------------------------------------------ opening

    def __enter__(self) -> ShardWriter:
        if self.out_dir.exists() and not self.out_dir.is_dir():
            raise ValueError(f"--out {self.out_dir} is a file; a token cache is a folder")
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._lock()
        try:
            self._open()
        except BaseException:
            self._unlock()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self._unlock()  # rows not committed yet are dropped: the cache stays as the manifest says

    def _lock(self) -> None:
        self._lock_file = open(self.out_dir / LOCK_NAME, "a")  # held until __exit__
        if fcntl is None:
            return
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock_file.close()
            self._lock_file = None
            raise ValueError(f"another build is writing to token cache {self.out_dir}") from None

    def _unlock(self) -> None:
        if self._lock_file is not None:
            self._lock_file.close()  # closing releases the flock
            self._lock_file = None

    def _open(self) -> None:
        for stale in self.out_dir.glob(".*.tmp"):  # left by a killed write; we hold the lock
            stale.unlink()
        if (self.out_dir / MANIFEST_NAME).exists():
            self.manifest = read_manifest(self.out_dir)
            self._check_compatible()
        else:
            foreign = sorted(p.name for p in self.out_dir.iterdir()
                             if p.name not in _OWN_NAMES and not _SHARD_RE.fullmatch(p.name))
            if foreign:
                raise ValueError(f"--out {self.out_dir} is not empty and not a token cache (it holds "
                                 f"{', '.join(foreign[:5])}{' ...' if len(foreign) > 5 else ''}): choose a new folder")
            self.manifest = {"format": FORMAT, "version": VERSION, "tokenizer": self.identity, **self.settings,
                             "shards": [], "skipped": {}}
            write_manifest(self.out_dir, self.manifest)
        for shard in self.manifest["shards"]:
            file = self.out_dir / shard["file"]
            if not file.is_file():
                raise ValueError(f"token cache {self.out_dir}: shard {shard['file']} listed in the manifest is "
                                 "missing; restore it or build into another --out folder")
            self.cached_ids.update(Dataset.from_file(str(file))["video_id"])
        listed = {s["file"] for s in self.manifest["shards"]}
        for path in sorted(self.out_dir.glob(SHARD_GLOB)):
            if path.name not in listed:
                self._adopt(path)
        self._next = 1 + max((int(_SHARD_RE.fullmatch(s["file"]).group(1)) for s in self.manifest["shards"]),
                             default=-1)

    def _check_compatible(self) -> None:
        check_tokenizer(self.manifest, self.identity, self.out_dir)
        for key, value in self.settings.items():
            if self.manifest.get(key) != value:
                raise ValueError(f"token cache {self.out_dir} holds {key}={self.manifest.get(key)!r}, this build "
                                 f"asks for {value!r}: use the same setting or another --out folder")

    def _adopt(self, path: Path) -> None:
        """A complete shard the manifest does not list yet: add it, or remove it if it does not fit."""
        try:
            shard = Dataset.from_file(str(path))
            ok = shard.features == self.features and not self.cached_ids.intersection(shard["video_id"])
        except Exception as err:  # an unreadable Arrow file: pyarrow raises several kinds
            logger.warning("token cache %s: removing unreadable shard %s (%s)", self.out_dir, path.name, err)
            path.unlink()
            return
        if not ok:
            logger.warning("token cache %s: removing shard %s, which does not match the manifest", self.out_dir,
                           path.name)
            path.unlink()
            return
        self.manifest["shards"].append({"file": path.name, "num_rows": len(shard),
                                        "num_clips": int(sum(shard["num_clips"]))})
        self.cached_ids.update(shard["video_id"])
        write_manifest(self.out_dir, self.manifest)
        logger.info("token cache %s: adopted shard %s (%d videos)", self.out_dir, path.name, len(shard))

    # ------------------------------------------------------------------------------------------ writing

    @property
    def num_pending(self) -> int:
        return len(self.rows["video_id"])

    @property
    def num_rows(self) -> int:
        return sum(s["num_rows"] for s in self.manifest["shards"])

    @property
    def num_clips(self) -> int:
        return sum(s["num_clips"] for s in self.manifest["shards"])

    def add(self, video_id: str, video: str, frame_indices: np.ndarray, tokens: np.ndarray) -> None:
        """One video's row: frame_indices (clips, 16), stored tokens (clips, q, d)."""
        n = len(frame_indices)
        for column, value in zip(_COLUMNS, (video_id, video, n, list(range(n)), frame_indices, tokens), strict=True):
            self.rows[column].append(value)

    def skip(self, video_id: str, video: str, error: str) -> None:
        self.manifest["skipped"][video_id] = {"video": video, "error": error}
        self._dirty = True

    def commit(self, max_rows: int | None = None) -> None:
        """Write the pending rows (the first ``max_rows`` of them) as the next shard and record it (and the
        skipped videos) in the manifest."""
        n = self.num_pending if max_rows is None else min(max_rows, self.num_pending)
        if n:
            name = SHARD_PATTERN.format(self._next)
            rows = {c: values[:n] for c, values in self.rows.items()}
            with atomic_path(self.out_dir / name) as tmp:
                writer = ArrowWriter(features=self.features, path=str(tmp))
                try:
                    writer.write_batch(rows)
                    writer.finalize()
                finally:
                    writer.close()
            self.manifest["shards"].append({"file": name, "num_rows": n, "num_clips": sum(rows["num_clips"])})
            for video_id in rows["video_id"]:
                self.manifest["skipped"].pop(video_id, None)  # readable now
            self.cached_ids.update(rows["video_id"])
            self.rows = {c: values[n:] for c, values in self.rows.items()}
            self._next += 1
        if n or self._dirty:
            write_manifest(self.out_dir, self.manifest)
            skipped = [{"video_id": k, **v} for k, v in self.manifest["skipped"].items()]
            atomic_write_text(self.out_dir / SKIPPED_NAME, "".join(json.dumps(r) + "\n" for r in skipped))
            self._dirty = False
