"""The token cache's on-disk format: names, Arrow features, the manifest, tokenizer identity, token dtypes."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch
from datasets import Array2D, Array3D, Features, Sequence, Value

from divot.constants import DENSE_FRAMES
from divot.hub import atomic_write_text

FORMAT = "divot-token-cache"
VERSION = 1
MANIFEST_NAME = "manifest.json"
SUMMARY_NAME = "summary.json"
SKIPPED_NAME = "skipped.jsonl"
LOCK_NAME = ".lock"
RANKS_DIR = "ranks"  # ranks/rank-00001/: one rank's part of a multi-process build, merged by rank 0
SHARD_PATTERN = "shard-{:05d}.arrow"
SHARD_GLOB = "shard-*.arrow"
# bfloat16 has no Arrow type: its bit patterns are stored as int16 and viewed back on reading.
TOKEN_DTYPES = {"float32": ("float32", torch.float32), "bfloat16": ("int16", torch.bfloat16)}
# Elements of each tensor read for the weights fingerprint (evenly strided): cheap for the 800 M-parameter
# paper preset on a GPU, and any training step changes them.
_FINGERPRINT_ELEMENTS = 65536


class NotATokenCacheError(ValueError):
    """A folder that is not (or not yet) a Divot token cache."""


class TokenizerMismatchError(ValueError):
    """The cache was built by a different tokenizer (config or weights) than the one expected."""


def features(num_tokens: int, token_dim: int, token_dtype: str) -> Features:
    """Arrow features of a shard; the clip axis of ``frame_indices`` and ``tokens`` is variable."""
    check_token_dtype(token_dtype)
    return Features({
        "video_id": Value("string"),
        "video": Value("string"),
        "num_clips": Value("int32"),
        "clip_index": Sequence(Value("int32")),
        "frame_indices": Array2D(shape=(None, DENSE_FRAMES), dtype="int32"),
        "tokens": Array3D(shape=(None, num_tokens, token_dim), dtype=TOKEN_DTYPES[token_dtype][0]),
    })


def check_token_dtype(token_dtype: str) -> None:
    if token_dtype not in TOKEN_DTYPES:
        raise ValueError(f"token_dtype must be one of {sorted(TOKEN_DTYPES)}, got {token_dtype!r}")


def tokens_to_storage(tokens: torch.Tensor, token_dtype: str) -> np.ndarray:
    """(clips, q, d) float tokens -> the numpy array stored in the ``tokens`` column."""
    if token_dtype == "bfloat16":
        return tokens.to(torch.bfloat16).view(torch.int16).numpy()
    return tokens.float().numpy()


def tokens_from_storage(array: np.ndarray, token_dtype: str) -> torch.Tensor:
    """The stored ``tokens`` value of one row -> tensor (clips, q, d) of the cache's dtype."""
    if token_dtype == "bfloat16":  # datasets' numpy formatter widens int16 to int64: narrow back, same values
        return torch.from_numpy(np.ascontiguousarray(array, dtype=np.int16)).view(torch.bfloat16)
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))


def tokenizer_identity(tokenizer) -> dict:
    """What identifies the tokenizer that made a cache: a hash of its config and a fingerprint of its weights.

    ``id`` (``"<config>-<weights>"``, 12 hex digits each) is what caches compare. The fingerprint hashes
    every state-dict entry's name, shape and dtype and an evenly strided sample of its values (as float32),
    so it is the same on any device and cheap for the paper preset.
    """
    from divot.config import config_to_dict

    config = config_to_dict(tokenizer.config)
    config_sha = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()
    weights = hashlib.sha256()
    # Weights held in a lower precision than saved (the frozen ViT's matrices under dtype="auto") count as the
    # saved values they were read from: the tokens they give under autocast are the same.
    as_saved = getattr(tokenizer, "fingerprint_as_saved", None) or {}
    for name, tensor in sorted(tokenizer.state_dict().items()):
        weights.update(as_saved.get(name) or fingerprint_entry(name, tensor))
    weights_sha = weights.hexdigest()
    return {
        "id": f"{config_sha[:12]}-{weights_sha[:12]}",
        "model_type": getattr(tokenizer, "model_type", type(tokenizer).__name__),
        "config_sha256": config_sha,
        "weights_fingerprint": weights_sha,
        "num_tokens": tokenizer.config.num_tokens,
        "token_dim": tokenizer.config.token_dim,
        "frame_size": tokenizer.config.frame_size,
    }


def fingerprint_entry(name: str, tensor: torch.Tensor) -> bytes:
    """One state-dict entry's part of the weights fingerprint: name, shape, dtype and a strided value sample."""
    flat = tensor.detach().flatten()
    step = max(1, flat.numel() // _FINGERPRINT_ELEMENTS)
    return f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode() + flat[::step].float().cpu().numpy().tobytes()


def identity_id(expected) -> str:
    """The identity id of a tokenizer, an identity dict or an id string."""
    if isinstance(expected, str):
        return expected
    if isinstance(expected, dict):
        return expected["id"]
    return tokenizer_identity(expected)["id"]


def check_tokenizer(manifest: dict, expected, where: Path) -> None:
    """Raise TokenizerMismatchError unless the cache at ``where`` was built by ``expected``."""
    have, want = manifest["tokenizer"], identity_id(expected)
    if have["id"] != want:
        source = f" (built from {have['source']})" if have.get("source") else ""
        raise TokenizerMismatchError(
            f"token cache {where} was built by tokenizer {have['id']}{source}, not by the expected tokenizer "
            f"{want}: rebuild the cache with this tokenizer (another --out folder) or load the matching one")


def read_manifest(out_dir: str | Path) -> dict:
    """The manifest of the cache at ``out_dir``; NotATokenCacheError (naming the path) if it is none."""
    out_dir = Path(out_dir)
    path = out_dir / MANIFEST_NAME
    if not path.is_file():
        raise NotATokenCacheError(f"{out_dir} is not a Divot token cache (no {MANIFEST_NAME}); build one with "
                                  "`divot cache-features`")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise NotATokenCacheError(f"{path} is not a Divot token cache manifest (invalid JSON: {err})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise NotATokenCacheError(f"{path} is not a Divot token cache manifest (format {found!r}, "
                                  f"expected {FORMAT!r})")
    if manifest.get("version") != VERSION:
        raise NotATokenCacheError(f"{path}: token cache version {manifest.get('version')!r} is not supported "
                                  f"(this toolkit reads version {VERSION})")
    return manifest


def write_manifest(out_dir: Path, manifest: dict) -> None:
    atomic_write_text(out_dir / MANIFEST_NAME, json.dumps(manifest, indent=1) + "\n")
