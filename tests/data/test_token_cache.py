"""The token cache: same tokens as ``encode_video``, resumable, skips bad videos, reads back by id, the CLI."""

import json
import shutil

import numpy as np
import pytest
import torch

from divot.cli import main
from divot.data.loading import clip_indices_for
from divot.data.shapes import ClipSpec, ObjectSpec, render_clip
from divot.data.shapes.generate import generate_dataset
from divot.data.token_cache import (
    NotATokenCacheError,
    TokenCache,
    TokenizerMismatchError,
    build_token_cache,
    tokenizer_identity,
)
from divot.data.writers import write_video
from divot.tokenizer import VideoTokenizer

NUM_CLIPS_LONG = 3  # the long video: 3 x 16 frames at 8 fps


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A shapes world of 5 one-clip videos plus one 3-clip video in videos/ (not in metadata.jsonl)."""
    root = tmp_path_factory.mktemp("world")
    generate_dataset(root, num=5, seed=0, num_stories=0, progress=False)
    spec = ClipSpec((ObjectSpec("circle", "red", "moves left"),))
    frames = np.concatenate([render_clip(spec, size=32, rng=None) for _ in range(NUM_CLIPS_LONG)])
    write_video(frames, root / "videos" / "long.mp4")
    return root


@pytest.fixture(scope="module")
def tokenizer():
    torch.manual_seed(0)
    return VideoTokenizer.from_preset("tiny").eval()


@pytest.fixture(scope="module")
def tokenizer_dir(tokenizer, tmp_path_factory):
    return tokenizer.save_pretrained(tmp_path_factory.mktemp("tok"))


def build(tokenizer, videos, out, **kwargs):
    kwargs = {"precision": "fp32", "progress": False, **kwargs}
    return build_token_cache(tokenizer, videos, out, **kwargs)


class CountingEncode:
    """Wraps ``tokenizer.encode``: counts clips encoded, optionally fails on call number ``fail_on``."""

    def __init__(self, tokenizer, monkeypatch, fail_on=None):
        self.real, self.clips, self.calls, self.fail_on = tokenizer.encode, 0, 0, fail_on
        monkeypatch.setattr(tokenizer, "encode", self)

    def __call__(self, clips, **kwargs):
        self.calls += 1
        if self.calls == self.fail_on:
            raise KeyboardInterrupt("simulated kill")
        self.clips += clips.shape[0]
        return self.real(clips, **kwargs)


def test_tokens_match_encode_video(world, tokenizer, tmp_path):
    # batch_size 2: the long video's clips straddle batches shared with other videos
    summary = build(tokenizer, world / "videos", tmp_path / "c", batch_size=2, shard_size=4)
    assert summary["counts"]["cached"] == 6 and summary["counts"]["clips_cached"] == 5 + NUM_CLIPS_LONG
    assert summary["token_shape"] == [16, 32] and summary["tokenizer"]["id"] == tokenizer_identity(tokenizer)["id"]
    cache = TokenCache(tmp_path / "c", expect_tokenizer=tokenizer)
    assert len(cache) == 6 and "long" in cache and cache["long"].shape == (NUM_CLIPS_LONG, 16, 32)
    for video_id in cache.ids():
        path = world / "videos" / f"{video_id}.mp4"
        expected = tokenizer.encode_video(path, precision="fp32")
        torch.testing.assert_close(cache[video_id], expected, atol=1e-5, rtol=1e-5)
        row = cache.row(video_id)
        assert row["video"] == str(path) and row["clip_index"] == list(range(len(expected)))
        np.testing.assert_array_equal(row["frame_indices"].numpy(), clip_indices_for(path))
    assert cache.ids()[0] == "long" and not torch.equal(cache["long"][0], cache[cache.ids()[1]][0])  # not mixed up


def test_resume_after_limit_encodes_only_the_rest(world, tokenizer, tmp_path, monkeypatch):
    counter = CountingEncode(tokenizer, monkeypatch)
    first = build(tokenizer, world / "videos", tmp_path / "c", limit=2)
    assert (first["counts"]["cached"], first["counts"]["remaining"]) == (2, 4)
    assert len(TokenCache(tmp_path / "c")) == 2 and counter.clips == NUM_CLIPS_LONG + 1  # "long" comes first
    second = build(tokenizer, world / "videos", tmp_path / "c")
    assert (second["counts"]["cached"], second["counts"]["already_present"]) == (4, 2)
    assert counter.clips == 5 + NUM_CLIPS_LONG  # every clip encoded exactly once overall
    third = build(tokenizer, world / "videos", tmp_path / "c")
    assert (third["counts"]["cached"], third["counts"]["already_present"]) == (0, 6)
    assert counter.clips == 5 + NUM_CLIPS_LONG  # the third run encoded nothing
    assert json.loads((tmp_path / "c" / "summary.json").read_text())["counts"] == third["counts"]


def test_killed_build_keeps_committed_shards_and_resumes(world, tokenizer, tmp_path, monkeypatch):
    counter = CountingEncode(tokenizer, monkeypatch, fail_on=6)  # a clip a call: long (3), 2 more, dies
    with pytest.raises(KeyboardInterrupt):
        build(tokenizer, world / "videos", tmp_path / "c", batch_size=1, shard_size=2)
    cache = TokenCache(tmp_path / "c")
    assert len(cache) == 2  # shard 0 (2 videos) committed; the open shard's video is lost
    (tmp_path / "c" / ".shard-00001.arrow.x.tmp").write_bytes(b"half")  # what a killed write leaves behind
    counter.fail_on, counter.clips = None, 0
    summary = build(tokenizer, world / "videos", tmp_path / "c", batch_size=1, shard_size=2)
    assert (summary["counts"]["cached"], summary["counts"]["already_present"]) == (4, 2)
    assert not list((tmp_path / "c").glob("*.tmp"))
    cache = TokenCache(tmp_path / "c")
    assert len(cache) == 6 and sorted(cache.ids()) == sorted(p.stem for p in (world / "videos").glob("*.mp4"))


def test_shard_missing_from_manifest_is_adopted(world, tokenizer, tmp_path, monkeypatch):
    build(tokenizer, world / "videos", tmp_path / "c", shard_size=2)
    manifest_path = tmp_path / "c" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["shards"].pop()  # killed after renaming the last shard, before the manifest was written
    manifest_path.write_text(json.dumps(manifest))
    assert len(TokenCache(tmp_path / "c")) < 6
    counter = CountingEncode(tokenizer, monkeypatch)
    summary = build(tokenizer, world / "videos", tmp_path / "c", shard_size=2)
    assert counter.clips == 0 and summary["counts"]["already_present"] == 6
    assert len(TokenCache(tmp_path / "c")) == 6


def test_unreadable_videos_are_skipped_and_counted(world, tokenizer, tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    for name in ("long.mp4", "train_s0_000000.mp4"):
        shutil.copy(world / "videos" / name, videos / name)
    (videos / "empty.mp4").write_bytes(b"")
    (videos / "notes.mp4").write_text("this is not a video\n")
    summary = build(tokenizer, videos, tmp_path / "c")
    assert (summary["counts"]["cached"], summary["counts"]["skipped"]) == (2, 2)
    assert {s["video_id"] for s in summary["skipped"]} == {"empty", "notes"}
    skipped = [json.loads(line) for line in (tmp_path / "c" / "skipped.jsonl").read_text().splitlines()]
    assert {s["video_id"] for s in skipped} == {"empty", "notes"}
    assert all(s["video"].endswith(f"{s['video_id']}.mp4") and s["error"] for s in skipped)
    cache = TokenCache(tmp_path / "c")
    assert sorted(cache.ids()) == ["long", "train_s0_000000"] and "notes" not in cache
    assert set(cache.skipped) == {"empty", "notes"}
    # a rerun retries them (still unreadable) and recomputes nothing else
    again = build(tokenizer, videos, tmp_path / "c")
    assert (again["counts"]["cached"], again["counts"]["skipped"], again["counts"]["already_present"]) == (0, 2, 2)


def test_reading_by_id_and_errors(world, tokenizer, tmp_path):
    build(tokenizer, world / "videos", tmp_path / "c", token_dtype="bfloat16")
    cache = TokenCache(tmp_path / "c", expect_tokenizer=tokenizer_identity(tokenizer)["id"])
    assert cache["long"].dtype == torch.bfloat16 and cache.token_shape == (16, 32)
    expected = tokenizer.encode_video(world / "videos" / "long.mp4", precision="fp32")
    torch.testing.assert_close(cache["long"].float(), expected, atol=0.02, rtol=0.01)
    with pytest.raises(KeyError, match="'nope' is not in token cache"):
        cache["nope"]
    assert cache.get("nope") is None and list(cache) == cache.ids()

    other = VideoTokenizer.from_preset("tiny")  # other random weights, same config
    with pytest.raises(TokenizerMismatchError, match=str(tmp_path / "c")):
        TokenCache(tmp_path / "c", expect_tokenizer=other)
    with pytest.raises(TokenizerMismatchError):
        build(other, world / "videos", tmp_path / "c", token_dtype="bfloat16")
    with pytest.raises(ValueError, match="token_dtype"):
        build(tokenizer, world / "videos", tmp_path / "c", token_dtype="float32")
    with pytest.raises(NotATokenCacheError, match=str(world)):
        TokenCache(world)
    with pytest.raises(FileNotFoundError, match="missing"):
        TokenCache(tmp_path / "missing")
    with pytest.raises(ValueError, match="not empty and not a token cache"):
        build(tokenizer, world / "videos", world / "videos")


def test_annotation_file_uses_record_ids(world, tokenizer, tmp_path):
    records = [json.loads(line) for line in (world / "metadata.jsonl").read_text().splitlines()]
    summary = build(tokenizer, world / "metadata.jsonl", tmp_path / "c", num_workers=1)
    assert summary["counts"]["cached"] == len(records) == 5
    cache = TokenCache(tmp_path / "c")
    assert cache.ids() == [r["id"] for r in records]
    first = records[0]
    torch.testing.assert_close(cache[first["id"]], tokenizer.encode_video(world / first["video"], precision="fp32"),
                               atol=1e-5, rtol=1e-5)


def test_cli_builds_and_resumes(world, tokenizer_dir, tmp_path):
    out = tmp_path / "c"
    args = ["cache-features", "--tokenizer", str(tokenizer_dir), "--videos", str(world / "metadata.jsonl"),
            "--out", str(out), "--device", "cpu", "--precision", "fp32", "--no-progress"]
    assert main(args + ["--limit", "3", "--batch-size", "2"]) == 0
    assert json.loads((out / "summary.json").read_text())["counts"]["cached"] == 3
    assert main(args) == 0
    counts = json.loads((out / "summary.json").read_text())["counts"]
    assert (counts["cached"], counts["already_present"], counts["skipped"]) == (2, 3, 0)
    assert len(TokenCache(out, expect_tokenizer=VideoTokenizer.from_pretrained(tokenizer_dir))) == 5


def test_cli_bad_input_is_a_one_line_error(world, tokenizer_dir, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    cases = [
        (["--tokenizer", str(tmp_path / "no_tokenizer"), "--videos", str(world / "videos")], "no_tokenizer"),
        (["--tokenizer", str(tokenizer_dir), "--videos", str(tmp_path / "no_videos")], "no_videos"),
        (["--tokenizer", str(tokenizer_dir), "--videos", str(empty)], "no video files in folder"),
        (["--tokenizer", str(tokenizer_dir), "--videos", str(world / "videos"), "--batch-size", "0"], "--batch-size"),
    ]
    for extra, needle in cases:
        code = main(["cache-features", *extra, "--out", str(tmp_path / "c"), "--device", "cpu", "--no-progress"])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2, extra
        assert err[-1].startswith("divot cache-features: error:") and needle in err[-1]
