"""Decoding ahead in DataLoader workers: same results in the same order as decoding in the main process, and a
bad video is one error record (the same reason), never a stopped run."""

import json

import pytest

from divot.data.prefetch import LoadFailed, default_num_workers, prefetch
from divot.eval.runner import (
    EvalItem,
    MissingVideo,
    PredictionLog,
    VideoTokens,
    merge_parts,
    part_name,
    run_items,
)


def _square(x: int) -> int:
    if x == 3:
        raise ValueError("three is bad")
    return x * x


@pytest.mark.parametrize("num_workers", [0, 2])
def test_prefetch_keeps_order_and_turns_errors_into_records(num_workers):
    out = list(prefetch(list(range(7)), _square, num_workers, errors=(ValueError,)))
    assert [item for item, _ in out] == list(range(7))
    assert [r for _, r in out if not isinstance(r, LoadFailed)] == [0, 1, 4, 16, 25, 36]
    assert out[3][1] == LoadFailed("three is bad", "ValueError")


def test_prefetch_raises_what_it_was_not_told_to_catch():
    with pytest.raises(ValueError, match="three"):
        list(prefetch(list(range(5)), _square, 0))
    with pytest.raises(ValueError, match="num_workers"):
        list(prefetch([1], _square, -1))


def test_default_num_workers_leaves_a_core(monkeypatch):
    import divot.data.prefetch as prefetch_module

    monkeypatch.setattr(prefetch_module, "available_cpus", lambda: 16)
    assert default_num_workers() == 4 and default_num_workers("cuda") == 8
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "8")
    assert default_num_workers() == 1
    monkeypatch.setattr(prefetch_module, "available_cpus", lambda: 1)
    assert default_num_workers() == 1


@pytest.fixture(scope="module")
def items(tmp_path_factory, clip_frames):
    from tests.eval.conftest import write_videos

    folder = write_videos(tmp_path_factory.mktemp("prefetch_videos"), ["a", "b", "d"], clip_frames)
    (folder / "c.mp4").write_bytes(b"not a video")
    videos = {"a": folder / "a.mp4", "b": folder / "b.mp4", "c": folder / "c.mp4", "d": folder / "d.mp4",
              "e": None}
    return [EvalItem(k, k, v, "q?", ["x", "y"], 0) for k, v in videos.items()]


def test_video_tokens_iterate_with_workers_equals_serial(eval_model, items):
    tokens = VideoTokens(eval_model, max_clips=2)
    serial = list(tokens.iterate(items, num_workers=0))
    ahead = list(tokens.iterate(items, num_workers=2))
    assert [it.item_id for it, _ in ahead] == [it.item_id for it, _ in serial] == ["a", "b", "c", "d", "e"]
    for (item, want), (_, got) in zip(serial, ahead, strict=True):
        if isinstance(want, MissingVideo):
            assert isinstance(got, MissingVideo) and str(got) == str(want), item.item_id
        else:
            assert got.equal(want) and got.equal(eval_model.tokens(item.video, max_clips=2))
    assert str(serial[2][1]).startswith("unreadable: ") and str(serial[4][1]) == "no video file"
    with pytest.raises(MissingVideo, match="unreadable"):
        tokens(items[2])


def test_run_items_with_workers_writes_the_same_log(eval_model, items, tmp_path):
    def predict(item, clips):
        return {"pred": 0, "sum": round(float(clips.sum()), 4)}

    logs = {}
    for n in (0, 2):
        log = PredictionLog(tmp_path / str(n))
        run_items(items, predict, VideoTokens(eval_model, max_clips=1), log, "t", progress=False, num_workers=n)
        logs[n] = (tmp_path / str(n) / "predictions.jsonl").read_text()
    assert logs[0] == logs[2]
    assert [json.loads(line)["status"] for line in logs[0].splitlines()] == \
        ["answered", "answered", "missing_video", "answered", "missing_video"]


def test_merge_parts_orders_by_item_and_prefers_answers(tmp_path):
    items = [EvalItem(i, i, None, "q", ["x"], 0) for i in ("a", "b", "c", "d")]
    (tmp_path / "predictions.jsonl").write_text(json.dumps({"id": "a", "status": "answered", "pred": 0}) + "\n")
    rows = {0: [{"id": "c", "status": "missing_video", "reason": "r"}, {"id": "a", "status": "answered", "pred": 0}],
            1: [{"id": "b", "status": "answered", "pred": 1}, {"id": "zz", "status": "answered", "pred": 2}],
            2: [{"id": "c", "status": "answered", "pred": 3}]}
    for rank, records in rows.items():
        (tmp_path / part_name(rank)).write_text("".join(json.dumps(r) + "\n" for r in records))
    with (tmp_path / part_name(2)).open("a") as f:
        f.write('{"id": "d", "sta')  # cut by a kill
    assert merge_parts(tmp_path, items) == 3
    lines = [json.loads(line) for line in (tmp_path / "predictions.jsonl").read_text().splitlines()]
    assert [(r["id"], r.get("pred")) for r in lines] == [("a", 0), ("b", 1), ("c", 3), ("zz", 2)]
    assert not list(tmp_path.glob("predictions.rank*")) and merge_parts(tmp_path, items) == 0
    log = PredictionLog(tmp_path, rank=1)
    assert log.done("c") and not log.done("d") and log.path.name == part_name(1)
