"""Decoder backends: the run-time choice, the same frames from every backend, seeking, decode-time resizing
against the reference path (full-size decode, then the transform's resize), rotation and unreadable files."""

from fractions import Fraction

import av
import numpy as np
import pytest
import torch

from divot.data import decoders, loading
from divot.data.decoders import BACKEND_ENV, VideoDecodeError, available_backends, decode_size, open_video
from divot.data.loading import load_sparse_clips, load_video_clips
from divot.data.sampling import sample_clip_indices, sparse_indices
from divot.data.transforms import frames_to_tensor
from divot.data.video import probe_video, read_frames
from divot.data.writers import write_video
from tests.data.test_video import decode_index, indexed_frames

# Measured differences between backends on the videos below (uint8 pixels, frames at the same size):
# at the native size all three use FFmpeg's yuv420p -> RGB and agree exactly; resized, PyAV and decord share one
# resize (Pillow bilinear) and agree exactly, torchcodec resizes with swscale (max 13 levels at sharp edges, mean 0.4).
SAME_SIZE_MAX, RESIZED_MAX, RESIZED_MEAN = 0, 16, 1.5
# load_sparse_clips at model size vs the reference path, on [-1, 1] pixels (2 / 255 is one uint8 level).
REFERENCE_MAX = {"pyav": 2 / 255 + 1e-6, "decord": 2 / 255 + 1e-6, "torchcodec": 0.15}
REFERENCE_MEAN = {"pyav": 3e-3, "decord": 3e-3, "torchcodec": 5e-3}


def encode(path, frames: np.ndarray, fps: float = 25, gop: int = 12, rotation: int | None = None, codec="libx264"):
    """Frames (t, h, w, 3) -> a file with keyframes every ``gop`` frames and B-frames (seeking has work to do)."""
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        stream.gop_size = gop
        if codec == "libx264":
            stream.options = {"crf": "14", "preset": "veryfast", "bf": "2", "x264-params": f"keyint={gop}:min-keyint={gop}"}
        if rotation is not None:
            stream.set_display_rotation(rotation)
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def textured(n: int, h: int, w: int) -> np.ndarray:
    """Moving gradients, a sharp red disc and an 8-pixel checker: what resizing filters disagree on."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    frames = []
    for t in range(n):
        f = np.stack([128 + 100 * np.sin((xx + 3 * t) / 9), 128 + 100 * np.cos((yy - 2 * t) / 7),
                      (xx + yy + 5 * t) % 256], -1)
        f[(xx - w / 2 - t) ** 2 + (yy - h / 2) ** 2 < (h / 5) ** 2] = (250, 20, 40)
        f[(yy // 8 + xx // 8) % 2 == 0] *= 0.8
        frames.append(np.clip(f, 0, 255).astype(np.uint8))
    return np.stack(frames)


def _usable() -> dict[str, str | None]:
    """backend -> None when it decodes here, else why not (a skip reason)."""
    reasons = {name: f"{name} is not installed" for name in decoders.BACKENDS}
    return {**reasons, **{name: None for name in available_backends()}}


@pytest.fixture(scope="module")
def backends(tmp_path_factory):
    """The backends that decode a small MP4 here."""
    path = write_video(indexed_frames(4, 32, 32), tmp_path_factory.mktemp("probe") / "probe.mp4")
    usable = []
    for name, reason in _usable().items():
        if reason is None:
            try:
                with open_video(path, backend=name) as video:
                    video.read([0])
                usable.append(name)
            except VideoDecodeError:
                pass
    return usable


def need(backends, name):
    if name not in backends:
        pytest.skip(f"backend {name} is not usable here (not installed, or torchcodec without FFmpeg libraries)")


# ------------------------------------------------------------------------------------ the choice


def test_pyav_is_always_there_and_order_is_decord_torchcodec_pyav(backends):
    assert "pyav" in backends
    assert available_backends() == [b for b in ("decord", "torchcodec", "pyav") if b in available_backends()]


@pytest.mark.parametrize("name", ["pyav", "decord", "torchcodec"])
def test_environment_variable_forces_a_backend(tmp_path, monkeypatch, backends, name):
    need(backends, name)
    path = write_video(indexed_frames(10, 32, 32), tmp_path / "clip.mp4")
    monkeypatch.setenv(BACKEND_ENV, name)
    with open_video(path) as video:
        assert video.backend == name
    with open_video(path, backend="pyav") as video:  # the argument wins over the variable
        assert video.backend == "pyav"


def test_auto_prefers_decord_and_sends_gifs_elsewhere(tmp_path, monkeypatch, backends):
    monkeypatch.delenv(BACKEND_ENV, raising=False)
    mp4 = write_video(indexed_frames(10, 32, 32), tmp_path / "clip.mp4")
    gif = write_video(indexed_frames(10, 32, 32), tmp_path / "clip.gif")
    with open_video(mp4) as video:
        assert video.backend == backends[0]
    with open_video(gif) as video:
        assert video.backend != "decord"


def test_unknown_or_missing_backend(tmp_path, monkeypatch):
    path = write_video(indexed_frames(4, 32, 32), tmp_path / "clip.mp4")
    with pytest.raises(ValueError, match="unknown video backend 'opencv'"):
        open_video(path, backend="opencv")
    monkeypatch.setenv(BACKEND_ENV, "ffmpeg-cli")
    with pytest.raises(ValueError, match=BACKEND_ENV):
        open_video(path)
    monkeypatch.setattr(decoders.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ValueError, match="not installed"):
        open_video(path, backend="decord")


def test_decode_size():
    assert decode_size(1080, 1920, 256) == (256, 455)  # odd width: the smallest size with short side 256
    assert decode_size(2160, 3840, 256) == (256, 455)
    assert decode_size(1920, 1080, 256) == (455, 256)
    assert decode_size(200, 300, 256) is None  # never upscaled while decoding: the transform does it
    assert decode_size(1080, 1920, None) is None


# ------------------------------------------------------------------------------------ same frames everywhere

VIDEOS = [  # (h, w, fps, suffix)
    (48, 64, 25, ".mp4"),
    (36, 70, 29.97, ".mp4"),  # chroma width 35 (odd)
    (64, 48, 30000 / 1001, ".mkv"),
    (40, 40, 25, ".webm"),
    (32, 48, 8, ".gif"),
]


@pytest.mark.parametrize(("h", "w", "fps", "suffix"), VIDEOS, ids=lambda v: str(v))
def test_every_backend_gives_the_same_frames(tmp_path, backends, h, w, fps, suffix):
    frames = indexed_frames(60, h, w)
    if suffix in (".mp4", ".mkv"):
        path = encode(tmp_path / f"v{suffix}", frames, fps=fps)
    else:
        path = write_video(frames, tmp_path / f"v{suffix}", fps=fps)
    wanted = np.array([0, 1, 5, 11, 12, 13, 30, 47, 58, 59])
    got = {}
    for name in backends:
        try:
            video = open_video(path, backend=name)
        except VideoDecodeError:
            assert name == "decord" and (suffix == ".gif" or w == 48), f"{name} failed on {path.name}"
            continue  # decord 0.6: no GIFs, and the width-48 bug (the automatic choice falls back to PyAV)
        with video:
            assert (video.info.num_frames, video.info.height, video.info.width) == (60, h, w), name
            assert video.info.fps == pytest.approx(fps, rel=0.03), name
            got[name] = video.read(wanted)
        np.testing.assert_array_equal(decode_index(got[name]), wanted, err_msg=name)
    for name, frames_here in got.items():
        assert np.abs(frames_here.astype(int) - got["pyav"]).max() <= SAME_SIZE_MAX, name


@pytest.mark.parametrize(("h", "w", "short_side"), [(90, 160, 32), (120, 90, 40), (72, 128, 50)])
def test_resized_frames_agree_across_backends(tmp_path, backends, h, w, short_side):
    path = encode(tmp_path / "tex.mp4", textured(30, h, w), gop=10)
    wanted = np.array([0, 4, 9, 10, 21, 29])
    out = {}
    for name in backends:
        with open_video(path, short_side=short_side, backend=name) as video:
            assert video.out_size == decode_size(h, w, short_side)
            out[name] = video.read(wanted).astype(int)
    for name, frames in out.items():
        diff = np.abs(frames - out["pyav"])
        assert diff.max() <= RESIZED_MAX and diff.mean() <= RESIZED_MEAN, (name, diff.max(), diff.mean())
    if "decord" in out:
        np.testing.assert_array_equal(out["decord"], out["pyav"])  # one resize for both


@pytest.mark.parametrize("name", ["pyav", "decord", "torchcodec"])
def test_model_size_decode_against_the_reference_path(tmp_path, backends, monkeypatch, name):
    # Reference: every frame decoded at full size, then the transform's antialiased bilinear resize.
    need(backends, name)
    h, w, fps = 144, 256, 25
    path = encode(tmp_path / "tex.mp4", textured(75, h, w), fps=fps, gop=25)
    monkeypatch.setenv(BACKEND_ENV, name)
    fast = load_sparse_clips(path, size=64)
    reference = load_sparse_clips(path, size=64, decode_at_model_size=False)
    indices = sparse_indices(np.stack(sample_clip_indices(75, fps)))
    unique, inverse = np.unique(indices, return_inverse=True)
    old = frames_to_tensor(read_frames(path, unique, backend=name), 64)[torch.from_numpy(inverse.reshape(indices.shape))]
    assert torch.equal(reference, old)  # the native-size path is the old path, exactly
    diff = (fast - reference).abs()
    assert diff.max() <= REFERENCE_MAX[name] and diff.mean() <= REFERENCE_MEAN[name], (diff.max(), diff.mean())


# ------------------------------------------------------------------------------------ seeking and loading


def test_pyav_seeks_to_exactly_the_frames_a_full_decode_gives(tmp_path):
    frames = textured(120, 32, 48)
    path = encode(tmp_path / "gop.mp4", frames, fps=29.97, gop=7)
    with av.open(str(path)) as container:
        every = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])  # (120, 32, 48, 3)
    wanted = np.array([0, 3, 6, 7, 8, 30, 31, 64, 65, 99, 118, 119])
    with open_video(path, backend="pyav") as video:
        np.testing.assert_array_equal(video.read(wanted), every[wanted])
        np.testing.assert_array_equal(video.read(np.array([2, 50])), every[[2, 50]])  # backwards: seeks back
    np.testing.assert_array_equal(read_frames(path, [119, 0, 64, 0], backend="pyav"), every[[119, 0, 64, 0]])


def test_loader_opens_once_and_decodes_small(tmp_path, monkeypatch):
    path = encode(tmp_path / "wide.mp4", textured(50, 90, 160), fps=25)
    opened, shapes = [], []
    real_open, real_decode = loading.open_video, loading._decode_frames

    def counting_open(*args, **kwargs):
        opened.append(args)
        return real_open(*args, **kwargs)

    def recording(video, indices):
        frames = real_decode(video, indices)
        shapes.append(frames.shape)
        return frames

    monkeypatch.setattr(loading, "open_video", counting_open)
    monkeypatch.setattr(loading, "_decode_frames", recording)
    clips = load_video_clips(path, size=32)
    assert clips.shape[1:] == (16, 3, 32, 32)
    assert len(opened) == 1 and len(shapes) == 1
    assert shapes[0][1:] == (32, 57, 3)  # decoded at the model's size, not 90 x 160


def test_native_size_loading_decodes_a_few_frames_at_a_time(tmp_path, monkeypatch):
    path = encode(tmp_path / "big.mp4", textured(40, 96, 128), fps=8)
    monkeypatch.setattr(loading, "_BATCH_BYTES", 3 * 96 * 128 * 3)  # three native frames per batch
    sizes = []
    real = loading._decode_frames
    monkeypatch.setattr(loading, "_decode_frames", lambda video, idx: sizes.append(len(idx)) or real(video, idx))
    reference = load_video_clips(path, size=32, decode_at_model_size=False)
    assert max(sizes) == 3 and sum(sizes) == 40
    monkeypatch.setattr(loading, "_decode_frames", real)
    frames = read_frames(path, np.arange(40))
    whole = frames_to_tensor(frames, 32)[torch.from_numpy(np.stack(sample_clip_indices(40, 8)))]
    assert torch.equal(reference, whole)


# ------------------------------------------------------------------------------------ awkward files


@pytest.mark.parametrize("rotation", [90, -90, 180])
def test_rotated_phone_footage_comes_out_upright(tmp_path, backends, rotation):
    frames = np.zeros((12, 64, 128, 3), dtype=np.uint8)  # widths 64 and 128: clear of decord's width bug
    frames[:, :16, :32] = 255  # a white block in the coded top-left corner
    path = encode(tmp_path / "phone.mp4", frames, rotation=rotation)
    upright = np.rot90(frames[0], rotation // 90)  # FFmpeg's sign: 90 turns counter-clockwise
    for name in backends:
        with open_video(path, backend=name) as video:
            assert (video.info.height, video.info.width) == upright.shape[:2], name
            got = video.read([0, 11])
        assert got.shape[1:3] == upright.shape[:2], name
        assert np.abs(got[0].astype(int) - upright).mean() < 3, name
        with open_video(path, short_side=24, backend=name) as video:
            assert video.read([5]).shape[1:3] == decode_size(*upright.shape[:2], 24)
    info = probe_video(path)
    assert (info.height, info.width) == upright.shape[:2]
    assert load_sparse_clips(path, size=24).shape == (1, 5, 3, 24, 24)


def _audio_only(path):
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("aac", rate=16000)
        for i in range(20):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), dtype=np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, i * 1024
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@pytest.mark.parametrize("kind", ["audio_only", "zero_length"])
def test_unreadable_files_name_the_file_with_every_backend(tmp_path, backends, kind):
    path = tmp_path / f"{kind}.mp4"
    if kind == "audio_only":
        _audio_only(path)
    else:
        path.write_bytes(b"")
    for name in [*backends, "auto"]:
        with pytest.raises(VideoDecodeError, match=path.name):
            with open_video(path, backend=name) as video:
                video.read([0])
    with pytest.raises(VideoDecodeError, match=path.name):
        load_sparse_clips(path)
    with pytest.raises(VideoDecodeError, match=path.name):
        probe_video(path)


def test_video_shorter_than_one_clip(tmp_path, backends):
    # 5 frames at 8 fps (0.6 s): one clip spreading its 16 indices over the 5 frames, with repeats.
    path = encode(tmp_path / "short.mp4", indexed_frames(5, 32, 32), fps=8)
    for name in backends:
        with open_video(path, backend=name) as video:
            assert video.info.num_frames == 5
    clips = load_video_clips(path, size=32)
    expected = np.stack(sample_clip_indices(5, 8.0))
    assert clips.shape == (1, 16, 3, 32, 32)
    np.testing.assert_array_equal(expected[0], [0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4])
    mean = ((clips.mean(dim=(-1, -2)) + 1) * 127.5).numpy()  # (1, 16, 3)
    np.testing.assert_array_equal(np.rint((mean[..., 0] - 16) / 8).astype(int), expected)


def test_decode_failure_midway_falls_back_to_pyav(tmp_path, monkeypatch, backends):
    if backends[0] == "pyav":
        pytest.skip("no other backend installed")
    path = write_video(indexed_frames(30, 32, 32), tmp_path / "clip.mp4", fps=8)
    first = backends[0]
    cls = {"decord": "divot.data.decoders.decord_decoder.DecordVideo",
           "torchcodec": "divot.data.decoders.torchcodec_decoder.TorchCodecVideo"}[first]

    def broken(self, indices):
        raise RuntimeError("corrupt macroblock")

    monkeypatch.setattr(cls + "._read", broken)
    with open_video(path) as video:
        assert video.backend == first
        np.testing.assert_array_equal(decode_index(video.read(np.array([3, 29]))), [3, 29])
        assert video.backend == "pyav"
    with pytest.raises(VideoDecodeError, match="clip.mp4.*corrupt macroblock"):
        with open_video(path, backend=first) as video:
            video.read([3])


def test_without_decord_the_next_backend_decodes(tmp_path, monkeypatch, backends):
    # A platform without a decord wheel: ``pip install divot`` leaves it out and nothing asks for it.
    real = decoders.importlib.util.find_spec
    monkeypatch.setattr(decoders.importlib.util, "find_spec", lambda name: None if name == "decord" else real(name))
    monkeypatch.delenv(BACKEND_ENV, raising=False)
    assert "decord" not in available_backends()
    path = write_video(indexed_frames(30, 32, 32), tmp_path / "clip.mp4", fps=8)
    with open_video(path) as video:
        assert video.backend == [b for b in backends if b != "decord"][0]
    clips = load_video_clips(path, size=32)
    assert clips.shape == (2, 16, 3, 32, 32)
