"""The clip sampling policy of DESIGN section 2, on frame counts directly."""

import math

import numpy as np
import pytest

from divot.constants import DENSE_FPS, DENSE_FRAMES, MAX_CLIPS, SPARSE_INDICES
from divot.data.sampling import sample_clip_indices, sparse_indices

RATES = [6, 8, 24, 29.97, 30]


def frames_for(seconds: float, fps: float) -> int:
    return math.ceil(seconds * fps - 1e-9)


def check_invariants(clips, num_frames):
    assert clips, "at least one clip"
    for clip in clips:
        assert clip.dtype == np.int64 and clip.shape == (DENSE_FRAMES,)
        assert clip.min() >= 0 and clip.max() < num_frames
    flat = np.concatenate(clips)
    assert np.all(np.diff(flat) >= 0), "indices must be non-decreasing within and across clips"


def window_of(start: int, fps: float) -> np.ndarray:
    return np.floor(start + np.arange(DENSE_FRAMES) * fps / DENSE_FPS + 1e-6).astype(np.int64)


@pytest.mark.parametrize("fps", RATES)
def test_shorter_than_one_clip_spreads_over_all_frames(fps):
    for num_frames in [1, 2, 5, frames_for(1.5, fps)]:
        clips = sample_clip_indices(num_frames, fps)
        check_invariants(clips, num_frames)
        assert len(clips) == 1
        assert clips[0][0] == 0 and clips[0][-1] == num_frames - 1
    assert sample_clip_indices(1, fps)[0].tolist() == [0] * DENSE_FRAMES


@pytest.mark.parametrize("fps", RATES)
def test_exactly_one_clip(fps):
    num_frames = frames_for(2.0, fps)
    clips = sample_clip_indices(num_frames, fps)
    check_invariants(clips, num_frames)
    assert len(clips) == 1
    np.testing.assert_array_equal(clips[0], window_of(0, fps))


def test_one_clip_at_8_and_30_fps_by_hand():
    assert sample_clip_indices(16, 8.0)[0].tolist() == list(range(16))
    expected_30 = [0, 3, 7, 11, 15, 18, 22, 26, 30, 33, 37, 41, 45, 48, 52, 56]  # floor(j * 3.75)
    assert sample_clip_indices(60, 30.0)[0].tolist() == expected_30
    expected_6 = [0, 0, 1, 2, 3, 3, 4, 5, 6, 6, 7, 8, 9, 9, 10, 11]  # floor(j * 0.75): repeats below 8 fps
    assert sample_clip_indices(12, 6.0)[0].tolist() == expected_6


@pytest.mark.parametrize("fps", RATES)
def test_back_to_back_with_squeezed_last_window(fps):
    num_frames = frames_for(5.0, fps)  # 2.5 clips
    clips = sample_clip_indices(num_frames, fps)
    check_invariants(clips, num_frames)
    assert len(clips) == 3
    step = fps / DENSE_FPS
    for c in range(2):
        np.testing.assert_array_equal(clips[c], window_of(math.floor(c * 16 * step + 1e-6), fps))
    last = clips[2]
    assert last[0] == math.floor(32 * step + 1e-6) and last[-1] == num_frames - 1
    assert last[0] > clips[1][-1]


@pytest.mark.parametrize("fps", RATES)
def test_twenty_clips_worth(fps):
    num_frames = frames_for(40.0, fps)
    clips = sample_clip_indices(num_frames, fps)
    check_invariants(clips, num_frames)
    assert len(clips) == MAX_CLIPS
    step = fps / DENSE_FPS
    for clip in clips:  # every clip is a real 2-second window at 8 fps
        np.testing.assert_array_equal(clip, window_of(int(clip[0]), fps))
        assert clip[-1] - clip[0] <= math.ceil(15 * step)


@pytest.mark.parametrize("fps", RATES)
def test_ten_minutes_gives_one_window_per_segment(fps):
    num_frames = frames_for(600.0, fps)
    clips = sample_clip_indices(num_frames, fps)
    check_invariants(clips, num_frames)
    assert len(clips) == MAX_CLIPS
    for k, clip in enumerate(clips):
        start = k * num_frames // MAX_CLIPS  # deterministic: each window starts at its segment start
        np.testing.assert_array_equal(clip, window_of(start, fps))


def test_max_clips_caps_the_count():
    assert len(sample_clip_indices(10_000, 30.0, max_clips=3)) == 3
    assert len(sample_clip_indices(10_000, 30.0, max_clips=1)) == 1
    assert len(sample_clip_indices(160, 8.0, max_clips=4)) == 4  # 10 clips' worth, capped to 4 segments


def test_segments_shorter_than_a_window_are_spread():
    # 2 fps, 80 frames: n8 = 320 -> 20 segments of 4 frames; a window at step 0.25 needs 3.75 + 1 frames.
    clips = sample_clip_indices(80, 2.0)
    check_invariants(clips, 80)
    assert len(clips) == MAX_CLIPS
    for k, clip in enumerate(clips):
        assert (clip[0], clip[-1]) == (4 * k, 4 * k + 3)
        assert set(clip.tolist()) == {4 * k, 4 * k + 1, 4 * k + 2, 4 * k + 3}


@pytest.mark.parametrize("fps", [0.5, 1, 2, 6, 8, 12.5, 23.976, 24, 25, 29.97, 30, 59.94, 60, 120])
@pytest.mark.parametrize("max_clips", [1, 3, 20])
def test_invariants_over_many_lengths(fps, max_clips):
    for num_frames in [1, 2, 3, 7, 15, 16, 17, 31, 32, 33, 47, 100, 319, 320, 321, 641, 1000, 4801, 20_000]:
        clips = sample_clip_indices(num_frames, fps, max_clips=max_clips)
        check_invariants(clips, num_frames)
        assert 1 <= len(clips) <= max_clips
        n8 = math.floor(num_frames * DENSE_FPS / fps + 1e-6)
        expected = max_clips if n8 >= 16 * max_clips else max(1, math.ceil(n8 / 16))
        assert len(clips) == expected, (num_frames, fps, max_clips)


def test_deterministic_without_rng():
    a = sample_clip_indices(18_000, 29.97)
    b = sample_clip_indices(18_000, 29.97)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize("fps", [6, 24, 30])
def test_random_windows_stay_inside_segments_and_follow_the_seed(fps):
    num_frames = frames_for(600.0, fps)
    step = fps / DENSE_FPS
    starts = set()
    for seed in range(20):
        clips = sample_clip_indices(num_frames, fps, rng=np.random.default_rng(seed))
        check_invariants(clips, num_frames)
        assert len(clips) == MAX_CLIPS
        for k, clip in enumerate(clips):
            lo, hi = k * num_frames // MAX_CLIPS, (k + 1) * num_frames // MAX_CLIPS
            assert lo <= clip[0] and clip[-1] < hi, (seed, k)
            np.testing.assert_array_equal(clip, window_of(int(clip[0]), fps))  # still a step-s window
        starts.add(int(clips[0][0]))
        again = sample_clip_indices(num_frames, fps, rng=np.random.default_rng(seed))
        assert all(np.array_equal(x, y) for x, y in zip(clips, again, strict=True))
    assert len(starts) > 10, "random starts should vary with the seed"
    room = num_frames // MAX_CLIPS - 16 * step
    assert min(starts) < room / 2 < max(starts), "starts should spread over the segment"


def test_random_single_clip_for_training():
    clips = [sample_clip_indices(300, 30.0, max_clips=1, rng=np.random.default_rng(s))[0] for s in range(50)]
    firsts = {int(c[0]) for c in clips}
    assert len(firsts) > 20 and min(firsts) >= 0 and max(c[-1] for c in clips) < 300


def test_rng_does_not_change_back_to_back_tiling():
    rng_clips = sample_clip_indices(100, 8.0, rng=np.random.default_rng(0))
    assert all(np.array_equal(x, y) for x, y in zip(rng_clips, sample_clip_indices(100, 8.0), strict=True))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_frames": 0, "fps": 8.0}, "num_frames"),
        ({"num_frames": -3, "fps": 8.0}, "num_frames"),
        ({"num_frames": 2.5, "fps": 8.0}, "num_frames"),
        ({"num_frames": True, "fps": 8.0}, "num_frames"),
        ({"num_frames": 10, "fps": 0.0}, "fps"),
        ({"num_frames": 10, "fps": -8.0}, "fps"),
        ({"num_frames": 10, "fps": float("nan")}, "fps"),
        ({"num_frames": 10, "fps": float("inf")}, "fps"),
        ({"num_frames": 10, "fps": 8.0, "max_clips": 0}, "max_clips"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        sample_clip_indices(**kwargs)


def test_numpy_integer_arguments_are_fine():
    clips = sample_clip_indices(np.int64(48), np.float32(24.0), max_clips=np.int32(2))
    assert len(clips) == 1


def test_sparse_indices():
    dense = np.stack(sample_clip_indices(4800, 8.0))  # (20, 16)
    sparse = sparse_indices(dense)
    assert sparse.shape == (20, len(SPARSE_INDICES))
    np.testing.assert_array_equal(sparse, dense[:, [0, 4, 8, 12, 15]])
    with pytest.raises(ValueError, match="last dim 16"):
        sparse_indices(np.zeros((2, 5)))
