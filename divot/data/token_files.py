"""Token files: clip tokens written by one stage for another (the LLM's generation path -> de-tokenizer T3).

A token file is a safetensors file with
  ``tokens``       float32 (n, q, d)   one row per clip (q x d as the tokenizer's output, e.g. 64 x 256)
  ``clip_index``   int64 (n,)          which clip of its video (the deterministic sampling policy, 0-based)
and string metadata
  ``format``  = "divot-tokens", ``version`` = "1",
  ``videos``  = a JSON list of n video paths (the real clip each row should reconstruct),
  ``source``  = what produced the rows (e.g. "llm-gmm var_scale=0.5" or "tokenizer").
Relative video paths resolve against the token file's folder.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from torch.utils.data import Dataset

from divot.data.loading import clip_indices_of, load_chosen_clips
from divot.data.video import VideoDecodeError
from divot.hub import save_state_dict

FORMAT = "divot-tokens"
VERSION = "1"


@dataclass
class TokenFile:
    tokens: torch.Tensor  # (n, q, d)
    clip_index: torch.Tensor  # (n,)
    videos: list[Path]
    source: str


def write_token_file(path: str | Path, tokens: torch.Tensor, videos: list[str | Path],
                     clip_index: list[int] | torch.Tensor | None = None, source: str = "") -> Path:
    """Write rows of tokens (n, q, d) with the video (and clip) each row stands for."""
    if tokens.ndim != 3:
        raise ValueError(f"tokens must be (n, q, d), got {tuple(tokens.shape)}")
    n = tokens.shape[0]
    clip_index = torch.zeros(n, dtype=torch.int64) if clip_index is None else torch.as_tensor(clip_index).long()
    if len(videos) != n or clip_index.shape != (n,):
        raise ValueError(f"need one video and clip index per row: {n} rows, {len(videos)} videos, "
                         f"clip_index {tuple(clip_index.shape)}")
    save_state_dict({"tokens": tokens.float(), "clip_index": clip_index}, path,
                    metadata={"format": FORMAT, "version": VERSION, "videos": json.dumps([str(v) for v in videos]),
                              "source": source})
    return Path(path)


def read_token_file(path: str | Path) -> TokenFile:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"token file not found: {path}")
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
        if meta.get("format") != FORMAT:
            raise ValueError(f"{path} is not a Divot token file (format {meta.get('format')!r}, "
                             f"expected {FORMAT!r})")
        tokens, clip_index = f.get_tensor("tokens"), f.get_tensor("clip_index")
    videos = [Path(v) if Path(v).is_absolute() else path.parent / v for v in json.loads(meta["videos"])]
    if len(videos) != tokens.shape[0] or clip_index.shape[0] != tokens.shape[0]:
        raise ValueError(f"{path}: {tokens.shape[0]} token rows but {len(videos)} videos / "
                         f"{clip_index.shape[0]} clip indices")
    return TokenFile(tokens=tokens, clip_index=clip_index, videos=videos, source=meta.get("source", ""))


class TokenClipDataset(Dataset):
    """Row i -> ``{"tokens": (q, d), "dense": (16, 3, S, S), "index": i}``, or None if the video is unreadable."""

    def __init__(self, token_file: TokenFile, frame_size: int):
        self.file = token_file
        self.frame_size = frame_size

    def set_epoch(self, epoch: int) -> None:  # rows are fixed clips: nothing to re-draw
        pass

    def __len__(self) -> int:
        return self.file.tokens.shape[0]

    def __getitem__(self, i: int) -> dict | None:
        import logging

        path, k = self.file.videos[i], int(self.file.clip_index[i])
        try:
            def choose(info):
                windows = clip_indices_of(info, k + 1)
                if k >= len(windows):
                    raise ValueError(f"clip {k} requested but the video has {len(windows)}")
                return windows[k : k + 1]

            dense = load_chosen_clips(path, choose, self.frame_size)[1][0]  # (16, 3, S, S); opened once
        except (VideoDecodeError, FileNotFoundError, OSError, ValueError) as e:
            logging.getLogger(__name__).warning("skipping token row %d (%s): %s", i, path, e)
            return None
        return {"tokens": self.file.tokens[i], "dense": dense, "index": i}
