"""A folder of episodes -> ``metadata.jsonl`` of 2-second clips (``divot data episodes``).

For each episode (every video file under the folder, sorted): detect shots (``scenes.detect_cuts``), merge
shots shorter than a clip, cut shots into clip windows, and, with a tokenizer, stitch adjacent shots whose
mean clip tokens are close into scenes. Each episode's result goes atomically to ``episodes/<id>.json``; a rerun
skips episodes whose record was made with the same settings from the same file (size and modification time),
so an interrupted run resumes. Unreadable episodes (not a video, truncated, no video stream) are logged,
skipped and counted; they are tried again on the next run. At the end ``metadata.jsonl`` (one row per clip,
every episode in order) and ``episodes.json`` (the summary) are rewritten atomically.

A clip row: ``id``, ``video`` (the episode, absolute path), ``episode``, ``start`` / ``end`` (seconds, what the
story reader and ``divot data stories --from`` read), ``start_frame`` / ``end_frame``, ``fps``, ``shot``
(index in the episode after merging) and ``scene`` (index after stitching), ``clip`` (index in the episode).
"""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from divot.data.episodes import require_scenedetect
from divot.data.episodes.clips import (
    clip_frames,
    clip_windows,
    merge_short_shots,
    shot_similarities,
    shots_from_cuts,
    stitch_scenes,
    window_clip_indices,
)
from divot.data.episodes.scenes import DetectorSettings, detect_cuts

logger = logging.getLogger(__name__)

METADATA = "metadata.jsonl"
SUMMARY = "episodes.json"
RECORDS = "episodes"  # subfolder of per-episode records
CHUNK_CLIPS = 64  # clips decoded and tokenized together
DEFAULT_STITCH_THRESHOLD = 0.97  # shapes-tiny on shapes episodes: docs/stories_from_episodes.md


@dataclass(frozen=True)
class SplitSettings:
    """Everything that decides an episode's clips (an episode record is reused only under equal settings).
    ``stitch_threshold`` None: no stitching; ``tokenizer``: what made the tokens (recorded, compared)."""

    detector: DetectorSettings = field(default_factory=DetectorSettings)
    stitch_threshold: float | None = None
    tokenizer: str | None = None

    def __post_init__(self) -> None:
        if self.stitch_threshold is not None and not -1.0 <= self.stitch_threshold <= 1.0 + 1e-9:
            raise ValueError(f"stitch_threshold is a cosine, in [-1, 1]; got {self.stitch_threshold}")
        if (self.stitch_threshold is None) != (self.tokenizer is None):
            raise ValueError("stitching needs both a tokenizer and a threshold (or neither)")

    def to_json(self) -> dict:
        return {"detector": self.detector.to_json(), "stitch_threshold": self.stitch_threshold,
                "tokenizer": self.tokenizer}


def episode_ids(paths: list[Path], root: Path) -> list[str]:
    """An id per episode: its path under ``root`` without the suffix, '/' -> '__' (the suffix is kept where two
    files would share an id); characters other than letters, digits, '-', '_' and '.' become '_'."""
    def clean(text: str) -> str:
        return re.sub(r"[^A-Za-z0-9_.-]", "_", text)

    stems = [clean(str(p.relative_to(root).with_suffix("")).replace("/", "__")) for p in paths]
    return [clean(f"{s}{p.suffix}") if stems.count(s) > 1 else s for s, p in zip(stems, paths, strict=True)]


def _source(path: Path) -> dict:
    stat = path.stat()
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def split_episode(path: Path, episode: str, settings: SplitSettings, tokenizer=None) -> dict:
    """One episode -> its record: cuts, shots, similarities, scenes and clip rows (see the module docstring).
    Raises the decoders' errors for an unreadable file."""
    from divot.data.video import probe_video

    info = probe_video(path)  # decodes frame 0: a non-video or truncated file fails here
    cuts = [c for c in detect_cuts(path, settings.detector) if c < info.num_frames]
    shots = merge_short_shots(shots_from_cuts(cuts, info.num_frames), clip_frames(info.fps))
    windows = [clip_windows(a, b, info.fps) for a, b in shots]  # per shot: [(first, last + 1), ...]
    similarities: list[float] = []
    scenes = list(range(len(shots)))  # without stitching every shot is a scene
    if tokenizer is not None and len(shots) > 1:
        similarities = shot_similarities(_shot_tokens(path, info.fps, windows, tokenizer))
        scenes = stitch_scenes(similarities, settings.stitch_threshold)
    rows, fps = [], float(info.fps)
    for shot, shot_windows in enumerate(windows):
        for first, last in shot_windows:
            k = len(rows)
            rows.append({"id": f"{episode}_c{k:04d}", "video": str(path.resolve()), "episode": episode,
                         "start": first / fps, "end": last / fps, "start_frame": first, "end_frame": last,
                         "fps": fps, "shot": shot, "scene": scenes[shot], "clip": k})
    return {"episode": episode, "video": str(path.resolve()), "source": _source(path),
            "settings": settings.to_json(), "num_frames": info.num_frames, "fps": fps, "cuts": cuts,
            "shots": [list(s) for s in shots], "similarities": similarities, "scenes": scenes, "clips": rows}


def _shot_tokens(path: Path, fps: float, windows: list[list[tuple[int, int]]], tokenizer) -> list[np.ndarray]:
    """Tokens (clips, q, d) of each shot's clips: the 5 sparse frames of each clip window, decoded once."""
    import torch

    from divot.data.loading import load_indexed_clips
    from divot.data.sampling import sparse_indices

    flat = [w for shot in windows for w in shot]
    sparse = sparse_indices(np.stack([window_clip_indices(a, b, fps) for a, b in flat]))  # (clips, 5)
    parts = []
    for start in range(0, len(sparse), CHUNK_CLIPS):  # a long episode's frames are never all in memory
        clips = load_indexed_clips(path, sparse[start: start + CHUNK_CLIPS], tokenizer.config.frame_size)
        with torch.no_grad():
            parts.append(tokenizer.encode(clips).numpy())  # (chunk, q, d) from (chunk, 5, 3, S, S)
    tokens = np.concatenate(parts)  # (clips, q, d)
    bounds = np.cumsum([0, *(len(shot) for shot in windows)])
    return [tokens[bounds[i]: bounds[i + 1]] for i in range(len(windows))]


def _load_record(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def split_episodes(episodes_dir: str | Path, out_dir: str | Path, settings: SplitSettings | None = None,
                   tokenizer=None, progress: bool = True) -> dict:
    """Every episode under ``episodes_dir`` -> ``out_dir/metadata.jsonl`` (+ ``episodes.json``, the summary,
    which is returned). ``tokenizer`` (a ``VideoTokenizer``) is needed when ``settings`` stitch."""
    from tqdm import tqdm

    from divot.data.decoders import VideoDecodeError
    from divot.data.video import list_videos
    from divot.hub import atomic_write_text

    require_scenedetect()
    settings = settings or SplitSettings()
    if (tokenizer is None) != (settings.stitch_threshold is None):
        raise ValueError("pass a tokenizer exactly when settings.stitch_threshold is set")
    episodes_dir, out_dir = Path(episodes_dir), Path(out_dir)
    paths = list_videos(episodes_dir, recursive=True)
    if not paths:
        raise ValueError(f"no video files under {episodes_dir}")
    unreadable_errors = _unreadable_errors(VideoDecodeError)
    records_dir = out_dir / RECORDS
    records_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    records, unreadable, resumed = [], [], 0
    for path, episode in tqdm(list(zip(paths, episode_ids(paths, episodes_dir), strict=True)), desc="episodes",
                              unit="episode", disable=not progress):
        record_path = records_dir / f"{episode}.json"
        old = _load_record(record_path) if record_path.is_file() else None
        if old and old.get("settings") == settings.to_json() and old.get("source") == _source(path):
            records.append(old)
            resumed += 1
            continue
        try:
            record = split_episode(path, episode, settings, tokenizer)
        except unreadable_errors as err:
            logger.warning("skipping unreadable episode %s: %s", path, str(err).splitlines()[0] if str(err) else err)
            unreadable.append({"episode": episode, "video": str(path), "reason": f"{type(err).__name__}: {err}"})
            continue
        atomic_write_text(record_path, json.dumps(record) + "\n")
        records.append(record)
    rows = [row for record in records for row in record["clips"]]
    atomic_write_text(out_dir / METADATA, "".join(json.dumps(row) + "\n" for row in rows))
    summary = {"episodes_dir": str(episodes_dir.resolve()), "metadata": str((out_dir / METADATA).resolve()),
               "num_episodes": len(paths), "num_split": len(records) - resumed, "num_resumed": resumed,
               "num_unreadable": len(unreadable), "unreadable": unreadable,
               "num_cuts": sum(len(r["cuts"]) for r in records), "num_shots": sum(len(r["shots"]) for r in records),
               "num_scenes": sum(max(r["scenes"]) + 1 for r in records), "num_clips": len(rows),
               "settings": settings.to_json(), "seconds": round(time.perf_counter() - started, 3)}
    atomic_write_text(out_dir / SUMMARY, json.dumps(summary, indent=1) + "\n")
    return summary


def _unreadable_errors(decode_error: type) -> tuple[type, ...]:
    """What an unreadable episode raises: our decoders' errors, PyAV's and PySceneDetect's."""
    import av
    from scenedetect import VideoOpenFailure

    return (decode_error, VideoOpenFailure, av.FFmpegError, OSError, EOFError, ValueError, RuntimeError)
