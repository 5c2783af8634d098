"""The shapes world: rendering, splits, measurements, dataset files, stories and the CLI."""

from __future__ import annotations

import json
import re
from pathlib import Path

import decord
import numpy as np
import pytest
import torch
from scipy import ndimage

from divot.constants import DENSE_FPS, DENSE_FRAMES
from divot.data.shapes import (
    COLOURS,
    HELD_OUT_COMBOS,
    MOTION_WORDS,
    MOTIONS,
    SHAPES,
    ClipSpec,
    ObjectSpec,
    classify_motion,
    generate_dataset,
    mask_iou,
    measure_clip,
    object_mask,
    render_clip,
    render_story,
    sample_spec,
    sample_story,
)
from divot.data.writers import write_video


def _read(path) -> np.ndarray:
    vr = decord.VideoReader(str(path))
    return vr.get_batch(list(range(len(vr)))).asnumpy()


def _balanced_specs(n: int, rng: np.random.Generator) -> list[ClipSpec]:
    """n single-object specs cycling through every motion, random colour and shape (either split)."""
    combos = [(c, s) for c in COLOURS for s in SHAPES]
    out = []
    for i in range(n):
        c, s = combos[int(rng.integers(len(combos)))]
        out.append(ClipSpec((ObjectSpec(s, c, MOTIONS[i % len(MOTIONS)]),)))
    return out


def _accuracy(specs, clips) -> dict[str, float]:
    hits = {"colour": 0, "motion": 0, "shape": 0}
    for spec, frames in zip(specs, clips, strict=True):
        m = measure_clip(frames)
        for key in hits:
            hits[key] += getattr(m, key) == getattr(spec.objects[0], key)
    return {k: v / len(specs) for k, v in hits.items()}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("shapes")
    return generate_dataset(out, num=16, seed=3, two_objects_prob=0.5, num_stories=4, progress=False)


# --- vocabulary, specs, rendering -------------------------------------------------------------------------


def test_specs_validate_and_caption():
    spec = ClipSpec((ObjectSpec("circle", "red", "moves left"), ObjectSpec("square", "blue", "stays still")))
    assert spec.caption == "a red circle moves left and a blue square stays still"
    with pytest.raises(ValueError, match="unknown shape"):
        ObjectSpec("hexagon", "red", "grows")
    with pytest.raises(ValueError, match="unknown motion"):
        ObjectSpec("circle", "red", "jumps")
    with pytest.raises(ValueError, match="at least one object"):
        ClipSpec(())
    assert set(MOTION_WORDS) == set(MOTIONS)


@pytest.mark.parametrize("size", [32, 64])
def test_render_clip_keeps_objects_inside(size):
    rng = np.random.default_rng(0)
    for _ in range(40):
        spec = sample_spec(rng, two_objects_prob=0.5)
        frames = render_clip(spec, size=size, rng=rng)
        assert frames.shape == (DENSE_FRAMES, size, size, 3) and frames.dtype == np.uint8
        border = np.concatenate([frames[:, 0], frames[:, -1], frames[:, :, 0], frames[:, :, -1]], axis=1)
        assert border.max() == 0, spec.caption  # the object never touches the frame edge
        assert (frames.reshape(DENSE_FRAMES, -1).max(axis=1) == 255).all()  # visible in every frame


def test_render_clip_is_deterministic_and_rejects_objects_that_do_not_fit():
    spec = ClipSpec((ObjectSpec("triangle", "green", "moves up"),))
    a = render_clip(spec, rng=np.random.default_rng(5))
    b = render_clip(spec, rng=np.random.default_rng(5))
    c = render_clip(spec, rng=np.random.default_rng(6))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    with pytest.raises(ValueError, match="does not fit"):
        render_clip(spec, object_size=0.7)


def test_held_out_split():
    rng = np.random.default_rng(0)
    seen_train, seen_held = set(), set()
    for _ in range(600):
        for split, seen in (("train", seen_train), ("held_out", seen_held)):
            for o in sample_spec(rng, split, two_objects_prob=0.5).objects:
                seen.add((o.colour, o.shape))
        story = sample_story(rng, "held_out", appear_prob=1.0)
        assert {(o.colour, o.shape) for o in story.clip_objects(2)} <= HELD_OUT_COMBOS
    assert not seen_train & HELD_OUT_COMBOS
    assert seen_train == {(c, s) for c in COLOURS for s in SHAPES} - HELD_OUT_COMBOS
    assert seen_held == HELD_OUT_COMBOS
    # Held-out pairs still cover every shape, so shape and colour are each seen in training.
    assert {s for _, s in seen_train} == set(SHAPES) and {c for c, _ in seen_train} == set(COLOURS)
    with pytest.raises(ValueError, match="unknown split"):
        sample_spec(rng, "test")


# --- measurements -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("size,n", [(32, 280), (64, 70)])
def test_measurements_on_rendered_clips(size, n):
    rng = np.random.default_rng(size)
    specs = _balanced_specs(n, rng)
    acc = _accuracy(specs, [render_clip(s, size=size, rng=rng) for s in specs])
    assert acc["colour"] == 1.0 and acc["motion"] >= 0.95 and acc["shape"] >= 0.9, acc


def test_measurements_after_mp4_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    specs = _balanced_specs(105, rng)
    clips = []
    for i, spec in enumerate(specs):
        path = write_video(render_clip(spec, rng=rng), tmp_path / f"{i}.mp4", DENSE_FPS)
        clips.append(_read(path))
        assert clips[-1].shape == (DENSE_FRAMES, 32, 32, 3)
    acc = _accuracy(specs, clips)
    assert acc["colour"] == 1.0 and acc["motion"] >= 0.95 and acc["shape"] >= 0.9, acc


def test_measurements_on_blurry_noisy_float_frames():
    """Model outputs: float (t, 3, h, w) in [-1, 1], blurred, dimmer and noisy."""
    rng = np.random.default_rng(2)
    specs = _balanced_specs(70, rng)
    clips = []
    for spec in specs:
        x = ndimage.gaussian_filter(render_clip(spec, rng=rng).astype(np.float32), sigma=(0, 1, 1, 0)) * 0.7
        x = torch.from_numpy(x).permute(0, 3, 1, 2) / 127.5 - 1.0  # (t, 3, h, w)
        clips.append((x + 0.08 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))).clamp(-1, 1))
    acc = _accuracy(specs, clips)
    assert acc["colour"] == 1.0 and acc["motion"] >= 0.95 and acc["shape"] >= 0.9, acc


def test_two_objects_measured_by_colour():
    rng = np.random.default_rng(4)
    hits, total = np.zeros(3), 0
    for _ in range(40):
        spec = sample_spec(rng, two_objects_prob=1.0)
        frames = render_clip(spec, rng=rng)
        for o in spec.objects:
            m = measure_clip(frames, colour=o.colour)
            hits += [m.colour == o.colour, m.motion == o.motion, m.shape == o.shape]
            total += 1
    assert (hits / total >= [1.0, 0.9, 0.85]).all(), hits / total


def test_empty_clip_measures_nothing():
    black = np.zeros((DENSE_FRAMES, 32, 32, 3), np.uint8)
    m = measure_clip(black)
    assert m.colour is None and m.motion is None and m.shape is None
    assert (m.area == 0).all() and np.isnan(m.centroid).all()
    noisy = np.random.default_rng(0).integers(0, 20, black.shape).astype(np.uint8)
    assert not object_mask(noisy).any()  # low-contrast noise is not an object


def test_classify_motion_and_mask_iou():
    t = np.arange(16.0)
    still = np.full(16, 100.0)
    track = np.stack([10 + 0.8 * t, np.full(16, 16.0)], axis=1)
    assert classify_motion(track, still, 32) == "moves right"
    assert classify_motion(track[:, ::-1], still, 32) == "moves down"
    assert classify_motion(np.full((16, 2), 16.0), 30 * (1 + 0.1 * t) ** 2, 32) == "grows"
    assert classify_motion(np.full((16, 2), 16.0), still[::-1] * np.exp(-0.1 * t), 32) == "shrinks"
    assert classify_motion(np.full((16, 2), 16.0) + 0.3 * np.sin(t)[:, None], still, 32) == "stays still"
    assert classify_motion(np.full((16, 2), np.nan), np.zeros(16), 32) is None

    frames = render_clip(ClipSpec((ObjectSpec("circle", "red", "moves left"),)), rng=np.random.default_rng(0))
    mask = object_mask(frames)
    assert mask_iou(mask, mask) == 1.0
    assert mask_iou(mask, np.zeros_like(mask)) == 0.0
    assert mask_iou(np.zeros_like(mask), np.zeros_like(mask)) == 1.0
    assert 0.0 < mask_iou(mask, np.roll(mask, 2, axis=2)) < 1.0
    with pytest.raises(ValueError, match="same shape"):
        mask_iou(mask, mask[:1])


# --- dataset files ----------------------------------------------------------------------------------------


def test_generate_is_deterministic(tmp_path):
    a = generate_dataset(tmp_path / "a", num=5, seed=7, num_stories=2, two_objects_prob=0.5, progress=False)
    b = generate_dataset(tmp_path / "b", num=5, seed=7, num_stories=2, two_objects_prob=0.5, progress=False)
    c = generate_dataset(tmp_path / "c", num=5, seed=8, num_stories=2, two_objects_prob=0.5, progress=False)
    for key in ("metadata", "egoschema_questions", "egoschema_answers", "msvd_questions", "msvd_answers",
                "msvd_qa", "stories"):
        assert Path(a[key]).read_bytes() == Path(b[key]).read_bytes(), key
    assert Path(a["metadata"]).read_bytes() != Path(c["metadata"]).read_bytes()
    for rel in [p.relative_to(tmp_path / "a") for p in sorted((tmp_path / "a").rglob("*.mp4"))]:
        np.testing.assert_array_equal(_read(tmp_path / "a" / rel), _read(tmp_path / "b" / rel))


def test_dataset_files_parse_and_agree(dataset):
    root = Path(dataset["out_dir"])
    meta = [json.loads(line) for line in Path(dataset["metadata"]).read_text().splitlines()]
    assert len(meta) == 16 and any(len(m["attributes"]) == 2 for m in meta)
    by_id = {m["id"]: m for m in meta}
    for m in meta:
        assert m["split"] == "train" and (root / m["video"]).is_file()
        assert m["caption"] == " and ".join(f"a {a['colour']} {a['shape']} {a['motion']}" for a in m["attributes"])

    questions = json.loads(Path(dataset["egoschema_questions"]).read_text())
    answers = json.loads(Path(dataset["egoschema_answers"]).read_text())
    assert [q["q_uid"] for q in questions] == list(by_id) == list(answers)
    video_dir = Path(dataset["video_dir"])
    for q in questions:
        assert (video_dir / f"{q['q_uid']}{dataset['video_ext']}").is_file()
        options = [q[f"option {i}"] for i in range(5)]
        assert len(set(options)) == 5
        attrs = by_id[q["q_uid"]]["attributes"]
        ref = re.search(r"(?:is|does) the (\w+)", q["question"]).group(1)
        obj = next(a for a in attrs if len(attrs) == 1 or ref in (a["shape"], a["colour"]))
        kind = "colour" if "colour" in q["question"] else "shape" if "shape" in q["question"] else "motion"
        assert options[answers[q["q_uid"]]] == obj[kind]

    test_q = json.loads(Path(dataset["msvd_questions"]).read_text())
    test_a = json.loads(Path(dataset["msvd_answers"]).read_text())
    qa = json.loads(Path(dataset["msvd_qa"]).read_text())
    assert len(test_q) == len(test_a) == len(qa) == 3 * sum(len(m["attributes"]) for m in meta)
    for q, a, row in zip(test_q, test_a, qa, strict=True):
        assert q["question_id"] == a["question_id"]
        assert row == {"question": q["question"], "video_name": q["video_name"], "answer": a["answer"]}
        assert len(a["answer"].split()) == 1
        words = {(k, at[k] if k != "motion" else MOTION_WORDS[at[k]])
                 for at in by_id[q["video_name"]]["attributes"] for k in at}
        assert (a["type"], a["answer"]) in words


def test_stories(dataset):
    root = Path(dataset["out_dir"])
    stories = [json.loads(line) for line in Path(dataset["stories"]).read_text().splitlines()]
    assert len(stories) == 4
    for s in stories:
        assert set(s) >= {"instruction", "segments"} and len(s["segments"]) == 3
        videos = {seg["video"] for seg in s["segments"]}
        assert len(videos) == 1
        vr = decord.VideoReader(str(root / videos.pop()))
        assert len(vr) == 3 * DENSE_FRAMES and vr.get_avg_fps() == pytest.approx(DENSE_FPS)
        assert len(vr) / vr.get_avg_fps() == pytest.approx(6.0)
        assert [(seg["start"], seg["end"]) for seg in s["segments"]] == [(0.0, 2.0), (2.0, 4.0), (4.0, 6.0)]
        subject = s["attributes"][0][0]
        noun = f"{subject['colour']} {subject['shape']}"
        assert s["instruction"] == f"Generate a story about a {noun}."
        assert s["segments"][0]["text"] == f"a {noun} {subject['motion']}."
        frames = vr.get_batch(list(range(len(vr)))).asnumpy()
        for k, (seg, objs) in enumerate(zip(s["segments"], s["attributes"], strict=True)):
            assert objs[0]["colour"] == subject["colour"] and objs[0]["shape"] == subject["shape"]
            if k:
                assert seg["text"] in (f"then it {objs[0]['motion']}.", f"then the {noun} {objs[0]['motion']}.",
                                       f"then a {objs[-1]['colour']} {objs[-1]['shape']} appears.")
            m = measure_clip(frames[k * DENSE_FRAMES:(k + 1) * DENSE_FRAMES], colour=subject["colour"])
            assert m.motion == objs[0]["motion"], (s["id"], k)  # the subject carries on from clip to clip


def test_render_story_sizes():
    story = sample_story(np.random.default_rng(0), appear_prob=1.0)
    assert story.appear_at in (1, 2) and "appears." in story.sentences()[story.appear_at]
    frames = render_story(story, size=64, num_frames=8)
    assert frames.shape == (24, 64, 64, 3) and frames.dtype == np.uint8


# --- CLI --------------------------------------------------------------------------------------------------


def test_cli_writes_dataset(tmp_path, monkeypatch):
    import divot.cli as cli

    # Only this command: the others are other modules' business.
    monkeypatch.setattr(cli, "COMMANDS", {"data": cli.COMMANDS["data"]})
    out = tmp_path / "world"
    assert cli.main(["data", "shapes", "--out", str(out), "--num", "10", "--seed", "0", "--no-progress"]) == 0
    assert len((out / "metadata.jsonl").read_text().splitlines()) == 10
    assert len(list((out / "videos").glob("*.mp4"))) == 10
    for rel in ("egoschema/questions.json", "egoschema/subset_answers.json", "msvd/test_q.json",
                "msvd/test_a.json", "msvd/qa.json", "stories.jsonl", "summary.json"):
        assert (out / rel).is_file(), rel
    assert json.loads((out / "summary.json").read_text())["num_stories"] == 2

    held = tmp_path / "held"
    assert cli.main(["data", "shapes", "--out", str(held), "--num", "4", "--seed", "1", "--held-out",
                     "--stories", "0", "--no-progress"]) == 0
    for line in (held / "metadata.jsonl").read_text().splitlines():
        row = json.loads(line)
        assert row["split"] == "held_out"
        assert all((a["colour"], a["shape"]) in HELD_OUT_COMBOS for a in row["attributes"])
    assert cli.main(["data", "shapes", "--out", str(tmp_path / "bad"), "--num", "2",
                     "--two-objects-prob", "1.5"]) == 2
