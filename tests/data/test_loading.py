"""Video file -> clips: the sampled frames come back, decoded once, in the right places."""

import time

import numpy as np
import pytest
import torch

from divot.constants import DENSE_FRAMES, MAX_CLIPS, NUM_SPARSE_FRAMES
from divot.data import loading
from divot.data.loading import clip_indices_for, load_sparse_clips, load_video_clips
from divot.data.sampling import sample_clip_indices, sparse_indices
from divot.data.transforms import to_sparse
from divot.data.video import VideoDecodeError
from divot.data.writers import write_video
from tests.data.test_video import indexed_frames as video_indexed_frames


def indexed_frames(n: int, h: int = 32, w: int = 32) -> np.ndarray:
    """Square frames whose colour encodes the frame number (see tests/data/test_video.py)."""
    return video_indexed_frames(n, h, w)


def decode_clip_indices(clips: torch.Tensor) -> np.ndarray:
    """Frame numbers from loaded clips (..., t, 3, h, w) in [-1, 1] -> (..., t)."""
    mean = ((clips.mean(dim=(-1, -2)) + 1) * 127.5).numpy()  # (..., t, 3)
    return (np.rint((mean[..., 0] - 16) / 8) + 28 * np.rint((mean[..., 1] - 16) / 8)).astype(np.int64)


@pytest.fixture
def count_reads(monkeypatch):
    """Record every decode the loaders make: a list of index arrays."""
    calls = []
    real = loading._decode_frames

    def recording(video, indices):
        calls.append(np.asarray(indices).copy())
        return real(video, indices)

    monkeypatch.setattr(loading, "_decode_frames", recording)
    return calls


@pytest.mark.parametrize(
    ("seconds", "fps", "expected_clips"),
    [(1.0, 8, 1), (2.0, 30, 1), (5.0, 24, 3), (5.0, 29.97, 3), (40.0, 6, MAX_CLIPS)],
)
def test_dense_clips_hold_the_sampled_frames(tmp_path, count_reads, seconds, fps, expected_clips):
    num_frames = int(np.ceil(seconds * fps - 1e-9))
    path = write_video(indexed_frames(num_frames), tmp_path / "video.mp4", fps=fps)
    clips = load_video_clips(path, size=32)
    assert clips.shape == (expected_clips, DENSE_FRAMES, 3, 32, 32) and clips.dtype == torch.float32
    assert clips.min() >= -1 and clips.max() <= 1
    expected = np.stack(sample_clip_indices(num_frames, fps))
    np.testing.assert_array_equal(decode_clip_indices(clips), expected)
    assert len(count_reads) == 1, "all frames of all clips are decoded in one read"
    np.testing.assert_array_equal(count_reads[0], np.unique(expected))


def test_sparse_clips_decode_only_the_sparse_frames(tmp_path, count_reads):
    path = write_video(indexed_frames(240), tmp_path / "video.mp4", fps=24)  # 10 s -> 5 clips
    sparse = load_sparse_clips(path, size=32)
    assert sparse.shape == (5, NUM_SPARSE_FRAMES, 3, 32, 32)
    wanted = sparse_indices(np.stack(sample_clip_indices(240, 24)))  # (5, 5)
    assert len(count_reads) == 1
    np.testing.assert_array_equal(count_reads[0], np.unique(wanted))  # nothing but the sparse frames
    np.testing.assert_array_equal(decode_clip_indices(sparse), wanted)
    assert torch.allclose(sparse, to_sparse(load_video_clips(path, size=32)))


def test_resize_and_crop_through_the_loader(tmp_path):
    path = write_video(indexed_frames(20, h=40, w=64), tmp_path / "wide.mp4", fps=8)
    clips = load_video_clips(path, size=24)
    assert clips.shape == (2, DENSE_FRAMES, 3, 24, 24)
    np.testing.assert_array_equal(decode_clip_indices(clips), np.stack(sample_clip_indices(20, 8)))


@pytest.mark.parametrize("name", ["tiny.mp4", "anim.gif", "narrow.webm"])
def test_tiny_frames_and_gif_through_the_fallback(tmp_path, name):
    h, w = (16, 16) if name != "narrow.webm" else (32, 24)
    path = write_video(indexed_frames(40, h, w), tmp_path / name, fps=8)
    clips = load_video_clips(path, size=16)
    assert clips.shape == (3, DENSE_FRAMES, 3, 16, 16)
    np.testing.assert_array_equal(decode_clip_indices(clips), np.stack(sample_clip_indices(40, 8.0)))


def test_random_sampling_is_seeded(tmp_path):
    path = write_video(indexed_frames(120), tmp_path / "video.mp4", fps=24)  # 5 s: 20 clips' worth is 40 s
    a = load_video_clips(path, size=32, max_clips=1, rng=np.random.default_rng(3))
    b = load_video_clips(path, size=32, max_clips=1, rng=np.random.default_rng(3))
    assert torch.equal(a, b)
    starts = {int(clip_indices_for(path, max_clips=1, rng=np.random.default_rng(s))[0, 0]) for s in range(10)}
    assert len(starts) > 3
    assert decode_clip_indices(a)[0, 0] == clip_indices_for(path, max_clips=1, rng=np.random.default_rng(3))[0, 0]


def test_ten_minute_video(tmp_path):
    # 10 minutes at 1 fps (600 frames, tiny) -> n8 = 4800 >= 320: exactly 20 clips, one per 30 s segment.
    began = time.perf_counter()
    path = write_video(indexed_frames(600, 16, 32), tmp_path / "ten_minutes.mp4", fps=1)
    clips = load_sparse_clips(path, size=16)
    assert time.perf_counter() - began < 5.0
    assert clips.shape == (MAX_CLIPS, NUM_SPARSE_FRAMES, 3, 16, 16)
    expected = sparse_indices(np.stack(sample_clip_indices(600, 1.0)))
    np.testing.assert_array_equal(decode_clip_indices(clips), expected)
    np.testing.assert_array_equal(expected[:, 0], np.arange(MAX_CLIPS) * 30)


def test_bad_files_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.mp4"):
        load_video_clips(tmp_path / "nothing.mp4")
    (tmp_path / "broken.mp4").write_text("not a video")
    with pytest.raises(VideoDecodeError, match="broken.mp4"):
        load_video_clips(tmp_path / "broken.mp4")
    with pytest.raises(VideoDecodeError, match="broken.mp4"):
        load_sparse_clips(tmp_path / "broken.mp4")


def test_clips_with_indices_open_the_file_once(tmp_path, count_reads, monkeypatch):
    path = write_video(indexed_frames(120), tmp_path / "video.mp4", fps=24)
    opened = []
    real_open = loading.open_video
    monkeypatch.setattr(loading, "open_video", lambda *a, **k: opened.append(a) or real_open(*a, **k))
    dense, sparse = loading.load_clips_with_indices(path, size=32)
    np.testing.assert_array_equal(dense, np.stack(sample_clip_indices(120, 24)))
    np.testing.assert_array_equal(decode_clip_indices(sparse), sparse_indices(dense))
    _, clips = loading.load_clips_with_indices(path, size=32, sparse=False)
    np.testing.assert_array_equal(decode_clip_indices(clips), dense)
    assert len(opened) == 2 and len(count_reads) == 2


@pytest.mark.parametrize("step_bytes", [2**30, 32 * 32 * 3 * 4])  # every frame in one read; 4 frames a read
def test_repeated_and_unsorted_indices_fill_every_place(tmp_path, monkeypatch, step_bytes):
    """Overlapping clips and indices out of order: each frame decoded once, every place filled, as decoding
    each place on its own would."""
    monkeypatch.setattr(loading, "_BATCH_BYTES", step_bytes)
    path = write_video(indexed_frames(30), tmp_path / "video.mp4", fps=10)
    indices = np.array([[3, 4, 5, 6], [5, 6, 7, 8], [20, 2, 2, 29], [0, 29, 11, 3]])  # (4, 4)
    clips = loading.load_indexed_clips(path, indices, size=32)
    assert clips.shape == (4, 4, 3, 32, 32) and clips.is_contiguous()
    np.testing.assert_array_equal(decode_clip_indices(clips), indices)
    one_by_one = torch.stack([loading.load_indexed_clips(path, np.array([[i]]), size=32)[0, 0]
                              for i in indices.reshape(-1)])
    assert torch.equal(clips.reshape(-1, 3, 32, 32), one_by_one)
