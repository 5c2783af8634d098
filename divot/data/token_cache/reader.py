"""``TokenCache``: read clip tokens by video id from a cache written by ``build_token_cache``."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import torch
from datasets import Dataset, concatenate_datasets

from divot.data.token_cache.format import check_tokenizer, read_manifest, tokens_from_storage

logger = logging.getLogger(__name__)


class TokenCache:
    """The videos of a token cache, looked up by id.

    Example::

        cache = TokenCache("cache/", expect_tokenizer=tokenizer)   # raises if another tokenizer made it
        tokens = cache["train_s0_000003"]                          # (clips, q, d) float32 (or bfloat16)
        row = cache.row("train_s0_000003")                         # + video, clip_index, frame_indices

    The shards listed in the manifest are memory-mapped (``datasets.Dataset.from_file``) and concatenated
    into ``dataset``; an id -> row index is built once, so a lookup is one Arrow row read.
    ``expect_tokenizer``: a ``VideoTokenizer``, an identity dict (``tokenizer_identity``) or its ``id``.
    """

    def __init__(self, out_dir: str | Path, expect_tokenizer=None):
        self.path = Path(out_dir)
        if not self.path.exists():
            raise FileNotFoundError(f"token cache {self.path} does not exist")
        self.manifest = read_manifest(self.path)
        if expect_tokenizer is not None:
            self.check_tokenizer(expect_tokenizer)
        shards = []
        for shard in self.manifest["shards"]:
            file = self.path / shard["file"]
            if not file.is_file():
                raise FileNotFoundError(f"token cache {self.path}: shard {shard['file']} listed in the manifest "
                                        "is missing")
            shards.append(Dataset.from_file(str(file)))
        self.dataset: Dataset | None = concatenate_datasets(shards) if shards else None
        ids = list(self.dataset["video_id"]) if self.dataset is not None else []
        self._row = {video_id: i for i, video_id in enumerate(ids)}
        if len(self._row) != len(ids):
            raise ValueError(f"token cache {self.path} holds duplicate video ids ({len(ids) - len(self._row)})")
        self._tokens = self.dataset.with_format("numpy", columns=["tokens"]) if shards else None
        self._rows = self.dataset.with_format("numpy") if shards else None

    # ------------------------------------------------------------------------------------------ metadata

    @property
    def tokenizer_identity(self) -> dict:
        return self.manifest["tokenizer"]

    @property
    def token_dtype(self) -> str:
        return self.manifest["token_dtype"]

    @property
    def token_shape(self) -> tuple[int, int]:
        """(q, d): tokens per clip and their width."""
        return self.manifest["num_tokens"], self.manifest["token_dim"]

    @property
    def max_clips(self) -> int:
        return self.manifest["max_clips"]

    @property
    def skipped(self) -> dict[str, dict]:
        """Videos the last builds could not read: id -> {"video", "error"}."""
        return dict(self.manifest.get("skipped", {}))

    def check_tokenizer(self, expected) -> None:
        """Raise TokenizerMismatchError unless ``expected`` (tokenizer, identity dict or id) built this cache."""
        check_tokenizer(self.manifest, expected, self.path)

    # ------------------------------------------------------------------------------------------ lookups

    def __len__(self) -> int:
        return len(self._row)

    def __contains__(self, video_id: object) -> bool:
        return video_id in self._row

    def __iter__(self) -> Iterator[str]:
        return iter(self._row)

    def ids(self) -> list[str]:
        """Video ids in cache order."""
        return list(self._row)

    def _index(self, video_id: str) -> int:
        try:
            return self._row[video_id]
        except KeyError:
            raise KeyError(f"video {video_id!r} is not in token cache {self.path} ({len(self)} videos)") from None

    def __getitem__(self, video_id: str) -> torch.Tensor:
        """Tokens of one video: (clips, q, d), float32 or bfloat16 as stored."""
        stored = self._tokens[self._index(video_id)]["tokens"]
        return tokens_from_storage(stored, self.token_dtype)

    def get(self, video_id: str, default=None):
        return self[video_id] if video_id in self._row else default

    def row(self, video_id: str) -> dict:
        """Everything stored for one video: video_id, video, num_clips, clip_index, frame_indices (clips, 16)
        int32 tensor and tokens (clips, q, d)."""
        row = self._rows[self._index(video_id)]
        return {
            "video_id": str(row["video_id"]), "video": str(row["video"]), "num_clips": int(row["num_clips"]),
            "clip_index": [int(c) for c in row["clip_index"]],
            "frame_indices": torch.from_numpy(row["frame_indices"]),
            "tokens": tokens_from_storage(row["tokens"], self.token_dtype),
        }

    def __repr__(self) -> str:
        q, d = self.token_shape
        return (f"TokenCache({str(self.path)!r}: {len(self)} videos, tokens (clips, {q}, {d}) {self.token_dtype}, "
                f"tokenizer {self.tokenizer_identity['id']})")
