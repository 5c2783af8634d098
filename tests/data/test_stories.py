"""Story files (DESIGN section 10): validation, segment clips, story files from captioned clips, token caches."""

import json

import numpy as np
import pytest

from divot.data.datasets import ClipDataset, read_annotations
from divot.data.shapes import generate_dataset, measure_clip
from divot.data.stories import (
    StoryFormatError,
    build_story_file,
    is_story_file,
    read_stories,
    segment_clip_indices,
)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    out = tmp_path_factory.mktemp("story_world")
    generate_dataset(out, num=6, seed=4, num_stories=3, progress=False)
    return out


def _write(tmp_path, lines):
    path = tmp_path / "stories.jsonl"
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    return path


GOOD = {"instruction": "Tell a story.", "segments": [{"text": "a red circle moves left.", "video": "a.mp4"}]}


def test_the_shapes_world_story_file_reads_back(world):
    stories = read_stories(world / "stories.jsonl")
    assert len(stories) == 3 and is_story_file(world / "stories.jsonl")
    story = stories[0]
    assert story.instruction.startswith("Generate a story about a ")
    assert [s.start for s in story.segments] == [0.0, 2.0, 4.0] and story.segments[2].end == 6.0
    assert story.segments[0].video.is_file()  # relative to the story file's folder
    assert story.segment_id(1) == f"{story.story_id}#1"
    assert story.extra["split"] == "train" and len(story.extra["attributes"]) == 3
    assert not is_story_file(world / "metadata.jsonl")


@pytest.mark.parametrize("line, message", [
    ("{not json", r"stories.jsonl:2: not valid JSON"),
    ([1, 2], r":2: expected a JSON object"),
    ({"segments": GOOD["segments"]}, r":2: 'instruction' must be a non-empty string"),
    ({"instruction": "x", "segments": []}, r":2: 'segments' must be a non-empty list"),
    ({"instruction": "x", "segments": [{"video": "a.mp4"}]}, r":2: segments\[0\]: 'text' must be"),
    ({"instruction": "x", "segments": [{"text": "t"}]}, r":2: segments\[0\]: 'video' must be a path"),
    ({"instruction": "x", "segments": [{"text": "t", "video": "a.mp4", "start": -1}]}, r"'start' must be a number"),
    ({"instruction": "x", "segments": [{"text": "t", "video": "a.mp4", "start": 2, "end": 1}]},
     r"'end' \(1.0\) must be after 'start' \(2.0\)"),
    ({**GOOD, "id": "a#b"}, r"'id' must not contain '#'"),
])
def test_bad_lines_name_the_line_and_the_field(tmp_path, line, message):
    path = _write(tmp_path, [GOOD, line])
    with pytest.raises(StoryFormatError, match=message):
        read_stories(path)


def test_duplicate_ids_and_empty_files_are_errors(tmp_path):
    with pytest.raises(StoryFormatError, match=r":2: story id 's' already used on line 1"):
        read_stories(_write(tmp_path, [{**GOOD, "id": "s"}, {**GOOD, "id": "s"}]))
    with pytest.raises(StoryFormatError, match="no stories"):
        read_stories(_write(tmp_path, [""]))
    with pytest.raises(FileNotFoundError, match="story file not found"):
        read_stories(tmp_path / "missing.jsonl")


def test_segment_windows_pick_the_clip_inside_start_end():
    np.testing.assert_array_equal(segment_clip_indices(48, 8.0, 2.0, 4.0), np.arange(16, 32))
    np.testing.assert_array_equal(segment_clip_indices(48, 8.0, None, None), np.arange(16))  # the whole video
    idx = segment_clip_indices(90, 30.0, 1.0, 3.0)  # 30 fps: 16 frames at 8 fps inside [30, 90)
    assert idx[0] >= 30 and idx[-1] < 90 and len(idx) == 16
    with pytest.raises(ValueError, match="segment starts at 9.0 s"):
        segment_clip_indices(48, 8.0, 9.0, None)


def test_segment_items_load_the_clip_their_sentence_describes(world):
    items = read_annotations(world / "stories.jsonl")
    assert len(items) == 9 and items[4].video_id.endswith("#1")
    data = ClipDataset(items, frame_size=32)
    story = read_stories(world / "stories.jsonl")[0]
    for k in range(3):
        want = story.extra["attributes"][k][0]
        clip = data[k]["dense"]
        assert clip.shape == (16, 3, 32, 32)
        measured = measure_clip(clip, colour=want["colour"])
        assert measured.colour == want["colour"]
        if want["motion"].startswith("moves"):
            assert measured.motion == want["motion"], (k, story.texts[k])


def test_build_story_file_groups_captioned_clips(world, tmp_path):
    out = build_story_file(world / "metadata.jsonl", tmp_path / "built.jsonl", segments_per_story=2,
                           instruction="Tell me about shapes.")
    stories = read_stories(out)
    captions = [json.loads(line)["caption"] for line in (world / "metadata.jsonl").read_text().splitlines()]
    assert len(stories) == 3 and [s.instruction for s in stories] == ["Tell me about shapes."] * 3
    assert [t for s in stories for t in s.texts] == captions
    assert all(seg.video.is_absolute() and seg.video.is_file() for s in stories for seg in s.segments)
    with pytest.raises(ValueError, match="fewer than segments_per_story=9"):
        build_story_file(world / "metadata.jsonl", tmp_path / "x.jsonl", segments_per_story=9)


def test_story_token_cache_holds_one_clip_per_segment(world, tmp_path):
    import torch

    from divot.data.loading import load_indexed_clips
    from divot.data.sampling import sparse_indices
    from divot.data.stories import segment_indices_for
    from divot.data.token_cache import TokenCache, build_token_cache
    from divot.tokenizer import VideoTokenizer

    torch.manual_seed(0)
    tokenizer = VideoTokenizer.from_preset("tiny").eval()
    summary = build_token_cache(tokenizer, world / "stories.jsonl", tmp_path / "tokens", precision="fp32",
                                progress=False)
    assert summary["counts"]["cached"] == 9
    cache = TokenCache(tmp_path / "tokens")
    story = read_stories(world / "stories.jsonl")[1]
    seg = story.segments[2]
    want = tokenizer.encode(load_indexed_clips(seg.video, sparse_indices(segment_indices_for(seg)), 32),
                            precision="fp32")
    got = cache[story.segment_id(2)]
    assert got.shape == (1, 16, 32)
    assert torch.allclose(got, want, atol=1e-5)
