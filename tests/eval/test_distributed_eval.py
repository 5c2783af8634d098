"""``divot eval egoschema`` under torchrun (2 CPU processes, gloo): the merged predictions and summary equal a
one-process run's, and a rerun after a killed run redoes only what no rank finished."""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# provenance: how the run was spread and how long it took, not what it found
RUN_FIELDS = ("seconds_this_run", "parallel")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _eval(data: dict, out: Path, model: Path, nproc: int, num_workers: int) -> subprocess.CompletedProcess:
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--master_port",
                 str(_free_port()), "-m", "divot.cli"] if nproc > 1 else [sys.executable, "-m", "divot.cli"])
    cmd = [*launcher, "eval", "egoschema", "--model", str(model), "--questions", data["questions"],
           "--answers", data["answers"], "--videos", data["videos"], "--out", str(out), "--device", "cpu",
           "--num-workers", str(num_workers), "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}  # same threads: same float sums
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-4000:]
    return result


def _backend_detail_cut(text: str) -> str:
    """Cut the decoders' own words from an unreadable video's reason: decord words the same failure
    differently depending on what its process decoded before ("[Errno ..] Invalid data" / "Error reading")."""
    return re.sub(r"truncated or corrupt \(decord: [^;]*;", "truncated or corrupt (decord: ...;", text)


def _summary(out: Path) -> dict:
    summary = json.loads(_backend_detail_cut((out / "summary.json").read_text().replace(str(out), "OUT")))
    return {k: v for k, v in summary.items() if k not in RUN_FIELDS}


@pytest.fixture(scope="module")
def runs(tmp_path_factory, divot_model_dir):
    """Six EgoSchema-format shapes questions (one video corrupt, one absent), answered by one process and by
    two ranks with a decoding worker each."""
    from divot.data.shapes.generate import generate_dataset

    root = tmp_path_factory.mktemp("dist_eval")
    made = generate_dataset(root / "data", num=6, seed=0, num_stories=0, progress=False)
    videos = Path(made["video_dir"])
    (videos / "train_s0_000002.mp4").write_bytes(b"not a video")
    (videos / "train_s0_000004.mp4").unlink()
    data = {"questions": made["egoschema_questions"], "answers": made["egoschema_answers"], "videos": str(videos)}
    _eval(data, root / "one", divot_model_dir, nproc=1, num_workers=0)
    _eval(data, root / "two", divot_model_dir, nproc=2, num_workers=1)
    return {"root": root, "data": data, "model": divot_model_dir}


@pytest.mark.slow
@pytest.mark.distributed
def test_two_ranks_equal_one_process(runs):
    one, two = runs["root"] / "one", runs["root"] / "two"
    lines = (one / "predictions.jsonl").read_text().splitlines()
    assert [json.loads(line)["status"] for line in lines].count("missing_video") == 2
    assert _backend_detail_cut((two / "predictions.jsonl").read_text()) == \
        _backend_detail_cut((one / "predictions.jsonl").read_text())
    assert _summary(two) == _summary(one)
    assert json.loads((two / "summary.json").read_text())["parallel"] == {"world_size": 2, "num_workers": 1}
    for name in ("submission.json", "submission.csv", "run.json"):
        assert (two / name).read_text() == (one / name).read_text(), name
    assert not list(two.glob("predictions.rank*.jsonl"))  # merged and removed


@pytest.mark.slow
@pytest.mark.distributed
def test_rerun_after_a_killed_rank_keeps_the_finished_share(runs):
    """A kill left rank 0's part (with a half-written line) and nothing of rank 1: the rerun keeps rank 0's
    finished records (a marked score survives) and answers the rest, again equal to one process."""
    one, out = runs["root"] / "one", runs["root"] / "resumed"
    out.mkdir()
    shutil.copy(runs["root"] / "two" / "run.json", out / "run.json")
    records = [json.loads(line) for line in (one / "predictions.jsonl").read_text().splitlines()]
    kept = [r for r in records[0::2] if r["status"] == "answered"]  # rank 0's share, answered
    kept[0] = {**kept[0], "scores": [123.0] * 5}  # a rerun that recomputed it would lose the mark
    part = "".join(json.dumps(r) + "\n" for r in kept) + '{"id": "train_s0_0000'
    (out / "predictions.rank00000.jsonl").write_text(part)
    _eval(runs["data"], out, runs["model"], nproc=2, num_workers=1)
    merged = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    by_id = {r["id"]: r for r in merged}
    assert len(merged) == len(records) and set(by_id) == {r["id"] for r in records}
    assert by_id[kept[0]["id"]]["scores"] == [123.0] * 5
    kept_ids = [r["id"] for r in kept]  # merged first (at the start of the rerun), then the rest in item order
    assert [r["id"] for r in merged] == kept_ids + [r["id"] for r in records if r["id"] not in kept_ids]
    for r in records:
        if r["id"] != kept[0]["id"]:
            assert json.loads(_backend_detail_cut(json.dumps(by_id[r["id"]]))) == \
                json.loads(_backend_detail_cut(json.dumps(r)))
    assert _summary(out)["counts"] == _summary(one)["counts"]
    assert not list(out.glob("predictions.rank*.jsonl"))
