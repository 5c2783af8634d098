"""Probing, decoding (decord with the PyAV fallback), bad files, folder listing and the writers."""

import av
import numpy as np
import pytest
import torch

from divot.data import decoders
from divot.data.video import VideoDecodeError, VideoInfo, list_videos, open_video, probe_video, read_frames
from divot.data.writers import to_uint8_frames, write_video


def indexed_frames(n: int, h: int = 32, w: int = 64) -> np.ndarray:
    """Flat frames whose colour encodes the frame number (survives lossy codecs and GIF palettes)."""
    i = np.arange(n)
    frames = np.empty((n, h, w, 3), dtype=np.uint8)
    frames[..., 0] = (16 + 8 * (i % 28))[:, None, None]
    frames[..., 1] = (16 + 8 * ((i // 28) % 28))[:, None, None]
    frames[..., 2] = 128
    return frames


def decode_index(frames: np.ndarray) -> np.ndarray:
    """Inverse of ``indexed_frames`` from the mean colour of each frame: (n, h, w, 3) -> (n,)."""
    mean = frames.reshape(frames.shape[0], -1, 3).mean(1)
    lo, hi = np.rint((mean[:, 0] - 16) / 8), np.rint((mean[:, 1] - 16) / 8)
    return (lo + 28 * hi).astype(np.int64)


# ------------------------------------------------------------------------------------ formats and rates


@pytest.mark.parametrize("suffix", [".mp4", ".avi", ".webm", ".mkv", ".mov", ".gif"])
def test_formats_probe_and_read_exact_frames(tmp_path, suffix):
    frames = indexed_frames(40)
    path = write_video(frames, tmp_path / f"clip{suffix}", fps=8)
    info = probe_video(path)
    assert (info.num_frames, info.width, info.height) == (40, 64, 32)
    assert info.fps == pytest.approx(8.0, rel=1e-3)
    assert info.duration == pytest.approx(5.0, rel=1e-3)
    wanted = [37, 3, 3, 20, 0, 39, 1]
    got = read_frames(path, wanted)
    assert got.shape == (7, 32, 64, 3) and got.dtype == np.uint8
    np.testing.assert_array_equal(decode_index(got), wanted)
    assert np.abs(got.astype(int) - frames[wanted]).max() <= 4


@pytest.mark.parametrize("fps", [6, 8, 24, 29.97, 30])
def test_frame_rates(tmp_path, fps):
    path = write_video(indexed_frames(50, 32, 32), tmp_path / "rate.mp4", fps=fps)
    info = probe_video(path)
    assert info.fps == pytest.approx(fps, abs=1e-3)
    assert info.num_frames == 50
    np.testing.assert_array_equal(decode_index(read_frames(path, [49, 25, 0])), [49, 25, 0])


@pytest.mark.parametrize("fps", [6, 8, 24, 30])
def test_gif_frame_rate_from_duration(tmp_path, fps):
    # GIF delays are whole centiseconds; the writer alternates them so frames / duration ~ fps.
    info = probe_video(write_video(indexed_frames(24, 16, 16), tmp_path / "rate.gif", fps=fps))
    assert info.num_frames == 24
    assert info.fps == pytest.approx(fps, rel=0.03)


# ------------------------------------------------------------------------------------ decord caveats


@pytest.mark.parametrize("hw", [(16, 16), (24, 24), (32, 48), (40, 24), (24, 40), (32, 160), (40, 64)])
def test_sizes_including_decord_width_bug(tmp_path, hw):
    # decord 0.6 fails on widths 16 / 24 / 48 ("size must exactly match"); the PyAV fallback hides it.
    h, w = hw
    path = write_video(indexed_frames(20, h, w), tmp_path / f"tiny_{h}x{w}.mp4", fps=8)
    info = probe_video(path)
    assert (info.num_frames, info.height, info.width) == (20, h, w)
    got = read_frames(path, [19, 0, 7, 7])
    assert got.shape == (4, h, w, 3)
    np.testing.assert_array_equal(decode_index(got), [19, 0, 7, 7])


def test_decord_failure_falls_back_to_pyav(tmp_path, monkeypatch):
    path = write_video(indexed_frames(30), tmp_path / "clip.mkv", fps=24)
    expected_info, expected = probe_video(path), read_frames(path, [29, 4, 4, 11])

    def broken(*args, **kwargs):
        raise RuntimeError("DECORDArrayCopyFromTo: The size must exactly match")

    decord = pytest.importorskip("decord")
    monkeypatch.setattr(decord, "VideoReader", broken)
    monkeypatch.setitem(decoders._UNUSABLE, "torchcodec", "not wanted in this test")
    with open_video(path) as video:
        assert video.backend == "pyav"
    info = probe_video(path)
    assert (info.num_frames, info.width, info.height) == (30, 64, 32)
    assert info.fps == pytest.approx(expected_info.fps)
    got = read_frames(path, [29, 4, 4, 11])
    np.testing.assert_array_equal(decode_index(got), [29, 4, 4, 11])
    assert np.abs(got.astype(int) - expected.astype(int)).max() <= 2


def test_gif_skips_decord(tmp_path, monkeypatch):
    path = write_video(indexed_frames(12, 16, 24), tmp_path / "anim.gif", fps=8)
    calls = []
    decord = pytest.importorskip("decord")
    monkeypatch.setattr(decord, "VideoReader", lambda *a, **k: calls.append(a))
    assert probe_video(path).num_frames == 12
    np.testing.assert_array_equal(decode_index(read_frames(path, [11, 0])), [11, 0])
    assert calls == []


# ------------------------------------------------------------------------------------ bad input


def _truncated(tmp_path):
    data = write_video(indexed_frames(40), tmp_path / "full.mp4").read_bytes()
    path = tmp_path / "truncated.mp4"
    path.write_bytes(data[: int(len(data) * 0.3)])
    return path


def _empty(tmp_path):
    path = tmp_path / "empty.mp4"
    path.write_bytes(b"")
    return path


def _text(tmp_path):
    path = tmp_path / "notes.mp4"
    path.write_text("this is a text file, not a video\n" * 20)
    return path


def _no_video_stream(tmp_path):
    # A valid MP4 header whose video stream never got a frame.
    path = tmp_path / "no_frames.mp4"
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=8)
        stream.width = stream.height = 32
        stream.pix_fmt = "yuv420p"
        container.start_encoding()
    return path


def _undecodable(tmp_path):
    # An intact index of 40 frames whose payload bytes are all zero: no frame decodes.
    data = bytearray(write_video(indexed_frames(40), tmp_path / "full.mp4").read_bytes())
    start, end = data.find(b"mdat") + 4, data.find(b"moov") - 4
    assert 0 < start < end
    data[start:end] = bytes(end - start)
    path = tmp_path / "zeroed.mp4"
    path.write_bytes(bytes(data))
    return path


BAD_FILES = [_truncated, _empty, _text, _no_video_stream, _undecodable]


@pytest.mark.parametrize("make", BAD_FILES, ids=lambda f: f.__name__.strip("_"))
def test_bad_files_raise_with_file_name(tmp_path, make):
    path = make(tmp_path)
    with pytest.raises(VideoDecodeError, match=path.name):
        probe_video(path)
    with pytest.raises(VideoDecodeError, match=path.name):
        read_frames(path, [0])


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.mp4"):
        probe_video(tmp_path / "missing.mp4")
    with pytest.raises(FileNotFoundError, match="missing.mp4"):
        read_frames(tmp_path / "missing.mp4", [0])
    folder = tmp_path / "a_folder.mp4"
    folder.mkdir()
    with pytest.raises(VideoDecodeError, match="a_folder.mp4"):
        probe_video(folder)


@pytest.mark.parametrize("suffix", [".mp4", ".gif"])
def test_bad_indices(tmp_path, suffix):
    path = write_video(indexed_frames(10, 32, 32), tmp_path / f"short{suffix}")
    with pytest.raises(ValueError, match=rf"out of range.*short\{suffix}"):
        read_frames(path, [0, 10])
    with pytest.raises(ValueError, match="must be >= 0"):
        read_frames(path, [-1])
    with pytest.raises(ValueError, match="non-empty"):
        read_frames(path, [])
    with pytest.raises(ValueError, match="integers"):
        read_frames(path, [0.5])


# ------------------------------------------------------------------------------------ listing


def test_list_videos(tmp_path):
    for name in ["b.MP4", "a.gif", "c.webm", "d.txt", "e.png", "._a.mp4", "f.mkv", "g.avi"]:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "h.mp4").write_bytes(b"x")
    assert [p.name for p in list_videos(tmp_path)] == ["a.gif", "b.MP4", "c.webm", "f.mkv", "g.avi"]
    assert [p.name for p in list_videos(tmp_path, recursive=True)][-1] == "h.mp4"
    with pytest.raises(FileNotFoundError, match="nowhere"):
        list_videos(tmp_path / "nowhere")


def test_video_info_duration(tmp_path):
    assert VideoInfo(tmp_path, num_frames=60, fps=30.0, width=4, height=4).duration == 2.0


# ------------------------------------------------------------------------------------ writers


@pytest.mark.parametrize("suffix", [".mp4", ".gif"])
def test_round_trip_pixels(tmp_path, suffix):
    yy, xx = np.mgrid[0:48, 0:64]
    frames = np.stack([np.stack([xx * 4, yy * 5, np.full_like(xx, 20 * t)], -1) for t in range(8)]).astype(np.uint8)
    got = read_frames(write_video(frames, tmp_path / f"grad{suffix}", fps=8), list(range(8)))
    assert got.shape == frames.shape
    assert np.abs(got.astype(int) - frames).mean() < 4


def test_gif_keeps_repeated_frames(tmp_path):
    # Pillow merges identical consecutive GIF frames; the writer must keep every frame.
    frames = np.zeros((10, 16, 16, 3), dtype=np.uint8)
    frames[5:] = (200, 30, 90)
    path = write_video(frames, tmp_path / "still.gif", fps=8)
    info = probe_video(path)
    assert info.num_frames == 10 and info.duration == pytest.approx(1.25, abs=0.02)
    got = read_frames(path, list(range(10)))
    np.testing.assert_array_equal(got[:, 0, 0], frames[:, 0, 0])


def test_float_tensor_input_matches_uint8(tmp_path):
    frames = indexed_frames(4, 16, 16)
    as_float = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 127.5 - 1.0  # (t, 3, h, w) in [-1, 1]
    np.testing.assert_array_equal(to_uint8_frames(as_float), frames)
    np.testing.assert_array_equal(to_uint8_frames(torch.from_numpy(frames)), frames)  # uint8 tensor kept
    a = read_frames(write_video(as_float, tmp_path / "f.mp4"), [0, 3])
    b = read_frames(write_video(frames, tmp_path / "u.mp4"), [0, 3])
    np.testing.assert_array_equal(a, b)


def test_odd_sizes_are_padded(tmp_path):
    info = probe_video(write_video(indexed_frames(3, 17, 23), tmp_path / "odd.mp4"))
    assert (info.height, info.width) == (18, 24)


def test_writer_rejects_bad_input(tmp_path):
    frames = indexed_frames(3, 16, 16)
    with pytest.raises(ValueError, match="no frames"):
        write_video(frames[:0], tmp_path / "none.mp4")
    with pytest.raises(ValueError, match="fps"):
        write_video(frames, tmp_path / "zero_fps.mp4", fps=0)
    with pytest.raises(ValueError, match="unsupported video suffix"):
        write_video(frames, tmp_path / "clip.flv")
    with pytest.raises(ValueError, match="NaN"):
        write_video(torch.full((2, 3, 8, 8), float("nan")), tmp_path / "nan.mp4")
    with pytest.raises(ValueError, match="4 dims"):
        write_video(frames[0], tmp_path / "one.mp4")


def test_mp4_files_are_reproducible(tmp_path):
    # x264's macroblock tree made some of these clips encode differently on each run (caught 10 of 10 runs).
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:32, 0:32]
    for _ in range(10):
        frames = np.zeros((16, 32, 32, 3), np.uint8) + rng.integers(0, 255, 3).astype(np.uint8)
        for t in range(16):
            frames[t][(xx - 8 - t) ** 2 + (yy - 16) ** 2 < 30] = rng.integers(0, 255, 3)
        encodings = {write_video(frames, tmp_path / "disc.mp4").read_bytes() for _ in range(5)}
        assert len(encodings) == 1
