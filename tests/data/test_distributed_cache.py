"""``divot cache-features`` under torchrun (2 CPU processes, gloo): the merged cache equals a one-process
build (manifest, shards byte for byte, skipped list), and a rerun after a killed build keeps every rank's
committed shards and redoes only the rest."""

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cache(videos: Path, out: Path, tokenizer: Path, nproc: int, num_workers: int) -> subprocess.CompletedProcess:
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--master_port",
                 str(_free_port()), "-m", "divot.cli"] if nproc > 1 else [sys.executable, "-m", "divot.cli"])
    cmd = [*launcher, "cache-features", "--tokenizer", str(tokenizer), "--videos", str(videos), "--out", str(out),
           "--device", "cpu", "--precision", "fp32", "--batch-size", "3", "--shard-size", "2",
           "--num-workers", str(num_workers), "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-4000:]
    return result


def _backend_detail_cut(text: str) -> str:
    """Cut the decoders' own words from an unreadable video's error: decord words the same failure
    differently depending on what its process decoded before ("[Errno ..] Invalid data" / "Error reading")."""
    return re.sub(r"truncated or corrupt \(decord: [^;]*;", "truncated or corrupt (decord: ...;", text)


def _files(out: Path) -> dict[str, bytes]:
    """The cache's files (manifest and skipped list with the decoders' words cut, shards as bytes)."""
    return {p.name: p.read_bytes() if p.suffix == ".arrow" else _backend_detail_cut(p.read_text())
            for p in sorted(out.iterdir()) if p.is_file() and p.name not in ("summary.json", ".lock")}


@pytest.fixture(scope="module")
def builds(tmp_path_factory, divot_model_dir):
    """Seven shapes videos (one corrupt) cached by one process and by two ranks with a decoding worker each."""
    from divot.data.shapes.generate import generate_dataset

    root = tmp_path_factory.mktemp("dist_cache")
    videos = Path(generate_dataset(root / "data", num=7, seed=0, num_stories=0, progress=False)["video_dir"])
    (videos / "train_s0_000003.mp4").write_bytes(b"not a video")
    tokenizer = divot_model_dir / "tokenizer"
    _cache(videos, root / "one", tokenizer, nproc=1, num_workers=0)
    _cache(videos, root / "two", tokenizer, nproc=2, num_workers=1)
    return {"root": root, "videos": videos, "tokenizer": tokenizer}


@pytest.mark.slow
@pytest.mark.distributed
def test_two_ranks_build_the_same_cache(builds):
    from divot.data.token_cache import TokenCache

    one, two = builds["root"] / "one", builds["root"] / "two"
    assert _files(two) == _files(one)  # manifest, shard-*.arrow, skipped.jsonl
    assert not (two / "ranks").exists()
    a, b = TokenCache(one), TokenCache(two)
    assert a.ids() == b.ids() and len(a) == 6 and list(a.skipped) == ["train_s0_000003"]
    assert all(torch.equal(a[i], b[i]) for i in a.ids())
    s1, s2 = (json.loads((o / "summary.json").read_text()) for o in (one, two))
    assert s2["counts"] == s1["counts"] and [r["video_id"] for r in s2["skipped"]] == ["train_s0_000003"]
    assert s2["parallel"] == {"world_size": 2, "num_workers": 1}


@pytest.mark.slow
@pytest.mark.distributed
def test_rerun_after_a_killed_build_keeps_the_committed_parts(builds):
    """A kill left rank 1's part with one committed shard (two videos) and rank 0's part empty: the rerun
    merges the kept shard first and encodes only the four other videos."""
    from divot.data.token_cache import TokenCache, build_token_cache
    from divot.data.token_cache.ranks import rank_dir
    from divot.tokenizer import VideoTokenizer

    root, one = builds["root"], builds["root"] / "one"
    out = root / "killed"
    tokenizer = VideoTokenizer.from_pretrained(builds["tokenizer"])
    # the state a killed two-rank build leaves: the cache folder's manifest and rank 1's first shard (its share
    # is videos 1, 3 (corrupt), 5)
    build_token_cache(tokenizer, [builds["videos"] / "train_s0_000000.mp4"], out, batch_size=3, precision="fp32",
                      shard_size=2, limit=0, progress=False, tokenizer_source=str(builds["tokenizer"]))
    kept = ["train_s0_000001", "train_s0_000005"]
    build_token_cache(tokenizer, [builds["videos"] / f"{i}.mp4" for i in kept], rank_dir(out, 1), batch_size=3,
                      precision="fp32", shard_size=2, progress=False, tokenizer_source=str(builds["tokenizer"]))
    (rank_dir(out, 1) / "summary.json").unlink()
    result = _cache(builds["videos"], out, builds["tokenizer"], nproc=2, num_workers=1)
    assert "merged 2 videos from 1 rank parts" in result.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"]["already_present"] == 2 and summary["counts"]["cached"] == 4
    a, b = TokenCache(one), TokenCache(out)
    assert b.ids()[:2] == kept and sorted(b.ids()) == sorted(a.ids()) and list(b.skipped) == list(a.skipped)
    assert all(torch.equal(a[i], b[i]) for i in a.ids())
    assert not (out / "ranks").exists()
