"""Episodes -> clips -> captions -> storylines (divot.data.episodes), fast parts: the clip windows against the
story reader, short-shot merging, stitching, shot detection on a shapes episode with known cuts and a cross-fade,
unreadable episodes, resuming, and the OpenAI-compatible captioner / storyline writer against a local stand-in
server. The whole flow with a Divot model and training is tests/data/test_episodes_end_to_end.py (slow)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest

from divot.cli import main
from divot.data.episodes.clips import (
    clip_frames,
    clip_windows,
    merge_short_shots,
    shot_similarities,
    shots_from_cuts,
    stitch_scenes,
    window_clip_indices,
)
from divot.data.stories import read_stories, segment_clip_indices
from tests.openai_stub import OpenAIStub, caption_reply, images_of, storyline_reply

ROOT = Path(__file__).resolve().parents[2]
pytest.importorskip("scenedetect", reason="the episodes extra: pip install 'divot[episodes]'")


def write_bad_episodes(folder: Path, good: Path) -> None:
    """A text file named .mp4, the first half of a real mp4 (its index is at the end), an audio-only mp4."""
    (folder / "not_a_video.mp4").write_text("this is not a video\n")
    data = good.read_bytes()
    (folder / "truncated.mp4").write_bytes(data[: len(data) // 2])
    with av.open(str(folder / "audio_only.mp4"), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        samples = np.sin(np.arange(16000, dtype=np.float32) / 10)[None]  # (1 channel, 1 s)
        frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
        frame.sample_rate = 16000
        for packet in [*stream.encode(frame), *stream.encode()]:
            container.mux(packet)
    (folder / "notes.txt").write_text("not a video file name: never listed\n")


@pytest.fixture(scope="module")
def episodes(tmp_path_factory):
    """One shapes episode (64 px, 16 fps, 9.5 s): cuts at 32 and 136, a cross-fade over [72, 96), a 1-second
    last scene; and three unreadable files."""
    from divot.data.shapes.episodes import render_episode
    from divot.data.writers import write_video

    root = tmp_path_factory.mktemp("episodes")
    frames, truth = render_episode(np.random.default_rng(24), num_scenes=4, size=64, fps=16.0, fade_prob=0.5,
                                   short_prob=0.3, max_clips=2)
    assert truth.cuts == [32, 136] and truth.fades == [(72, 96)] and truth.scenes[-1]["short"]  # what is tested
    write_video(frames, root / "eps" / "ep1.mp4", fps=16.0)
    write_bad_episodes(root / "eps", root / "eps" / "ep1.mp4")
    return root, truth


@pytest.mark.parametrize("fps", [8.0, 16.0, 25.0, 30000 / 1001, 30.0])
@pytest.mark.parametrize("length", [1, 15, 16, 47, 64, 100, 301])
def test_clip_windows_tile_the_shot_and_are_what_the_story_reader_decodes(fps, length):
    start = 7
    windows = clip_windows(start, start + length, fps)
    assert windows[0][0] == start and windows[-1][1] == start + length
    assert all(a[1] == b[0] for a, b in zip(windows[:-1], windows[1:], strict=True))  # back to back
    if length >= clip_frames(fps):
        assert all(b - a >= clip_frames(fps) for a, b in windows)  # whole 2-second clips
        assert len(windows) == int(length / (fps / 8) + 1e-6) // 16
    for a, b in windows:  # the metadata's seconds give the same 16 frames back
        assert np.array_equal(segment_clip_indices(start + length + 5, fps, a / fps, b / fps),
                              window_clip_indices(a, b, fps))


def test_short_shots_merge_into_a_neighbour():
    shots = shots_from_cuts([10, 40, 45, 100, 100, 500], 120)  # 500: past the end, ignored
    assert shots == [(0, 10), (10, 40), (40, 45), (45, 100), (100, 120)]
    assert merge_short_shots(shots, 16) == [(0, 45), (45, 100), (100, 120)]  # first joins the next, others the previous
    assert merge_short_shots([(0, 5), (5, 9)], 16) == [(0, 9)]  # a short video stays one shot
    assert merge_short_shots(shots, 1) == shots


def test_stitching_follows_the_cosine_of_mean_tokens():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(4, 8)), rng.normal(size=(4, 8))  # (q, d)
    shots = [np.stack([a, a + 0.01]), np.stack([a + 0.02]), np.stack([b, b])]  # (clips, q, d) each
    sims = shot_similarities(shots)
    assert sims[0] > 0.99 and sims[1] < 0.5
    assert stitch_scenes(sims, 0.9) == [0, 0, 1]
    assert stitch_scenes(sims, None) == [0, 1, 2]
    assert stitch_scenes(sims, -1.0) == [0, 0, 0]


def test_cuts_are_found_within_a_frame_and_a_fade_gives_at_most_one(episodes):
    from divot.data.episodes.scenes import DetectorSettings, detect_cuts

    root, truth = episodes
    for detector in ("content", "adaptive"):
        cuts = detect_cuts(root / "eps" / "ep1.mp4", DetectorSettings(detector))
        for cut in truth.cuts:
            assert any(abs(c - cut) <= 1 for c in cuts), (detector, cuts)
        in_fade = [c for c in cuts if any(a - 1 <= c <= b + 1 for a, b in truth.fades)]
        assert len(in_fade) <= 1, (detector, cuts)
        assert all(any(abs(c - t) <= 1 for t in truth.cuts) for c in cuts if c not in in_fade), (detector, cuts)


def test_unreadable_episodes_are_counted_and_a_rerun_resumes(episodes, tmp_path, caplog):
    root, truth = episodes
    out = tmp_path / "clips"
    assert main(["data", "episodes", str(root / "eps"), "--out", str(out), "--no-progress"]) == 0
    summary = json.loads((out / "episodes.json").read_text())
    assert summary["num_episodes"] == 4 and summary["num_split"] == 1 and summary["num_unreadable"] == 3
    assert sorted(u["episode"] for u in summary["unreadable"]) == ["audio_only", "not_a_video", "truncated"]
    rows = [json.loads(line) for line in (out / "metadata.jsonl").read_text().splitlines()]
    record = json.loads((out / "episodes" / "ep1.json").read_text())
    # the 1-second last scene joined the one before; the fade left at most one boundary
    assert record["shots"][-1][1] == truth.num_frames and all(b - a >= 32 for a, b in record["shots"])
    assert [r["clip"] for r in rows] == list(range(len(rows))) and rows[-1]["end_frame"] == truth.num_frames
    assert all(r["scene"] == r["shot"] for r in rows)  # no --model: no stitching
    assert {"id", "video", "episode", "start", "end", "shot", "scene"} <= set(rows[0])

    before = (out / "metadata.jsonl").read_text()
    assert main(["data", "episodes", str(root / "eps"), "--out", str(out), "--no-progress"]) == 0
    summary = json.loads((out / "episodes.json").read_text())
    assert (summary["num_split"], summary["num_resumed"], summary["num_unreadable"]) == (0, 1, 3)
    assert (out / "metadata.jsonl").read_text() == before
    # other settings: split again
    assert main(["data", "episodes", str(root / "eps"), "--out", str(out), "--no-progress", "--threshold", "40"]) == 0
    assert json.loads((out / "episodes.json").read_text())["num_split"] == 1

    assert main(["data", "episodes", str(tmp_path / "missing"), "--out", str(out)]) == 2
    assert main(["data", "episodes", str(root / "eps"), "--out", str(out), "--stitch-threshold", "0.5"]) == 2


@pytest.fixture
def clips(episodes, tmp_path):
    root, _ = episodes
    out = tmp_path / "clips"
    assert main(["data", "episodes", str(root / "eps"), "--out", str(out), "--no-progress"]) == 0
    return out


def test_openai_captioner_and_storylines_against_a_local_server(clips, monkeypatch):
    monkeypatch.setenv("STUB_KEY", "sk-test-secret")
    rows = [json.loads(line) for line in (clips / "metadata.jsonl").read_text().splitlines()]
    with OpenAIStub(caption_reply) as server:
        args = ["data", "captions", str(clips), "--captioner-url", server.url, "--captioner-model", "gpt-4v-stub",
                "--api-key-env", "STUB_KEY", "--no-progress"]
        assert main(args) == 0
        assert len(server.requests) == len(rows)
        first = server.requests[0]
        assert first["path"] == "/v1/chat/completions" and first["auth"] == "Bearer sk-test-secret"
        assert first["body"]["model"] == "gpt-4v-stub" and first["body"]["temperature"] == 0.0
        parts = first["body"]["messages"][0]["content"]
        assert parts[0]["type"] == "text" and "8 frames" in parts[0]["text"]
        frames = images_of(first["body"])
        assert len(frames) == 8 and frames[0].shape == (64, 64, 3)
        assert main(args) == 0  # a rerun resumes: nothing asked again
        assert len(server.requests) == len(rows)
    captions = [json.loads(line) for line in (clips / "captions.jsonl").read_text().splitlines()]
    assert [c["id"] for c in captions] == [r["id"] for r in rows] and captions[0]["caption"].startswith("A scene of 8")
    summary = json.loads((clips / "captions.json").read_text())
    who = summary["captioner"]
    assert who["served_model"] == ["gpt-4v-stub-2024-08-06"] and who["system_fingerprint"] == ["fp_stub"]
    assert "8 frames" in who["prompt"] and summary["num_resumed"] == len(rows)
    assert "sk-test-secret" not in (clips / "captions.json").read_text()

    garble = {"n": 0}

    def reply(body):  # the second request gets an answer no parser reads
        garble["n"] += 1
        return "I cannot help with that." if garble["n"] == 2 else storyline_reply(body)

    with OpenAIStub(reply) as server:
        assert main(["data", "storylines", str(clips), "--storyline", server.url, "--storyline-model", "gpt-stub",
                     "--segments", "1", "--no-progress"]) == 0
        assert "Generate a story about" in server.requests[0]["body"]["messages"][1]["content"]
    stories = read_stories(clips / "stories.jsonl")
    summary = json.loads((clips / "stories.json").read_text())
    assert summary["num_failed"] == 1 and len(stories) == len(rows) - 1
    assert stories[0].instruction.startswith("Generate a story about a scene of 8 frames")
    assert stories[0].segments[0].start == rows[0]["start"] and summary["storyline"]["served_model"]
    with OpenAIStub(storyline_reply, status=400) as server:  # a failing endpoint stops the run, clearly
        assert main(["data", "storylines", str(clips), "--storyline", server.url, "--storyline-model", "m",
                     "--segments", "1", "--no-progress"]) == 2


def test_template_storylines_and_stories_from_clip_captions(clips):
    rows = [json.loads(line) for line in (clips / "metadata.jsonl").read_text().splitlines()]
    captions = [{**r, "caption": f"A red circle moves {'left' if i % 2 else 'up'}", "captioner": "test"}
                for i, r in enumerate(rows)]
    (clips / "captions.jsonl").write_text("".join(json.dumps(c) + "\n" for c in captions))
    assert main(["data", "storylines", str(clips), "--storyline", "template", "--segments", "2", "--group", "episode",
                 "--no-progress"]) == 0
    story = read_stories(clips / "stories.jsonl")[0]
    assert story.instruction == "Generate a story that begins: a red circle moves up."
    assert story.texts == ["A red circle moves up.", "then a red circle moves left."]
    assert (story.segments[1].start, story.segments[1].end) == (rows[1]["start"], rows[1]["end"])
    # `divot data stories --from` keeps the clip windows too
    assert main(["data", "stories", "--from", str(clips / "captions.jsonl"), "--out", str(clips / "s2.jsonl"),
                 "--segments", "2"]) == 0
    seg = read_stories(clips / "s2.jsonl")[0].segments[1]
    assert (seg.start, seg.end) == (rows[1]["start"], rows[1]["end"])
    assert main(["data", "storylines", str(clips), "--segments", "99", "--no-progress"]) == 2  # no run that long


def test_help_loads_neither_torch_nor_scenedetect():
    probe = ("import sys; from divot.cli import main\ntry: main(['data', 'episodes', '--help'])\nexcept SystemExit: pass\n"
             "print(sorted(m for m in ('torch', 'scenedetect', 'cv2', 'av') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr
    assert "--stitch-threshold" in proc.stdout and proc.stdout.strip().endswith("[]")
