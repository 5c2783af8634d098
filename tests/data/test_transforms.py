"""Resize / crop / normalise, sparse selection and images as clips."""

import numpy as np
import pytest
import torch
from PIL import Image

from divot.constants import DENSE_FRAMES, NUM_SPARSE_FRAMES, SPARSE_INDICES
from divot.data.transforms import frames_to_tensor, image_to_clip, to_sparse


def column_frames(t: int, h: int, w: int) -> np.ndarray:
    """Frames whose red channel holds the column number and green the frame number: (t, h, w, 3) uint8."""
    frames = np.zeros((t, h, w, 3), dtype=np.uint8)
    frames[..., 0] = np.arange(w, dtype=np.uint8)[None, None, :]
    frames[..., 1] = np.arange(t, dtype=np.uint8)[:, None, None]
    return frames


def to_uint8(x: torch.Tensor) -> np.ndarray:
    return ((x + 1) * 127.5).round().to(torch.uint8).numpy()


def test_value_mapping_without_resize():
    frames = np.zeros((2, 8, 8, 3), dtype=np.uint8)
    frames[0] = 255
    frames[1, :, :, 1] = 51
    out = frames_to_tensor(frames, size=8)
    assert out.shape == (2, 3, 8, 8) and out.dtype == torch.float32
    assert torch.all(out[0] == 1.0)
    assert torch.allclose(out[1, 0], torch.tensor(-1.0)) and torch.allclose(out[1, 1], torch.tensor(51 / 127.5 - 1))


@pytest.mark.parametrize(("h", "w", "top", "left"), [(40, 64, 0, 12), (64, 40, 12, 0)])
def test_center_crop_of_non_square_frames(h, w, top, left):
    frames = np.zeros((3, h, w, 3), dtype=np.uint8)  # red = row, green = column, blue = frame
    frames[..., 0] = np.arange(h, dtype=np.uint8)[None, :, None]
    frames[..., 1] = np.arange(w, dtype=np.uint8)[None, None, :]
    frames[..., 2] = np.arange(3, dtype=np.uint8)[:, None, None]
    out = to_uint8(frames_to_tensor(frames, size=40))  # short side already 40: crop only
    assert out.shape == (3, 3, 40, 40)
    # The long side (64) loses 12 pixels at each end.
    np.testing.assert_array_equal(out[0, 0, :, 0], np.arange(top, top + 40))
    np.testing.assert_array_equal(out[0, 1, 0, :], np.arange(left, left + 40))
    np.testing.assert_array_equal(out[:, 2, 0, 0], [0, 1, 2])


@pytest.mark.parametrize(("h", "w", "size"), [(16, 16, 32), (24, 40, 32), (48, 24, 32), (40, 64, 32), (256, 320, 64)])
def test_shapes_and_range(h, w, size):
    rng = np.random.default_rng(0)
    out = frames_to_tensor(rng.integers(0, 256, (3, h, w, 3), dtype=np.uint8), size=size)
    assert out.shape == (3, 3, size, size)
    assert out.min() >= -1.0 and out.max() <= 1.0


def test_constant_frames_stay_constant_after_resize():
    frames = np.full((2, 24, 40, 3), (10, 128, 250), dtype=np.uint8)
    for size in (16, 96):  # down and up
        out = frames_to_tensor(frames, size=size)
        expected = torch.tensor([10, 128, 250]).float().view(1, 3, 1, 1) / 127.5 - 1
        assert torch.allclose(out, expected.expand_as(out), atol=1e-6)


def test_downscale_is_antialiased():
    # A one-pixel checkerboard averages to grey when antialiased; plain bilinear would alias it.
    checker = ((np.indices((64, 64)).sum(0) % 2) * 255).astype(np.uint8)
    frames = np.repeat(checker[None, :, :, None], 3, axis=-1)  # (1, 64, 64, 3)
    out = frames_to_tensor(frames, size=16)
    assert out.abs().max() < 0.05


def test_chunked_conversion_matches_frame_by_frame():
    frames = np.random.default_rng(1).integers(0, 256, (37, 20, 30, 3), dtype=np.uint8)
    whole = frames_to_tensor(frames, size=12)
    single = torch.cat([frames_to_tensor(f[None], size=12) for f in frames])
    assert torch.equal(whole, single)
    assert torch.equal(whole, frames_to_tensor(torch.from_numpy(frames), size=12))


def test_frames_at_the_resized_size_are_only_cropped_and_normalised():
    # Cropping the uint8 frames before they become float must give exactly the elementwise formula.
    frames = np.random.default_rng(2).integers(0, 256, (19, 24, 41, 3), dtype=np.uint8)
    expected = torch.from_numpy(frames[:, :, 8:32]).permute(0, 3, 1, 2).float() / 255.0
    expected = (expected - 0.5) / 0.5
    assert torch.equal(frames_to_tensor(frames, size=24), expected)


def test_out_receives_the_result_in_place():
    frames = np.random.default_rng(3).integers(0, 256, (5, 20, 30, 3), dtype=np.uint8)
    big = torch.full((7, 3, 12, 12), 9.0)
    returned = frames_to_tensor(frames, size=12, out=big[1:6])
    assert returned.data_ptr() == big[1:6].data_ptr()
    assert torch.equal(big[1:6], frames_to_tensor(frames, size=12))
    assert torch.all(big[0] == 9.0) and torch.all(big[6] == 9.0)
    for bad in (torch.empty(4, 3, 12, 12), torch.empty(5, 3, 12, 12, dtype=torch.float64)):
        with pytest.raises(ValueError, match="out must be"):
            frames_to_tensor(frames, size=12, out=bad)


@pytest.mark.parametrize(
    "frames",
    [np.zeros((2, 8, 8, 3), dtype=np.float32), np.zeros((8, 8, 3), dtype=np.uint8),
     np.zeros((2, 3, 8, 8), dtype=np.uint8), np.zeros((0, 8, 8, 3), dtype=np.uint8)],
)
def test_bad_frames(frames):
    with pytest.raises(ValueError, match="frames"):
        frames_to_tensor(frames, size=8)


def test_to_sparse():
    clips = torch.arange(DENSE_FRAMES, dtype=torch.float32).view(1, 1, DENSE_FRAMES, 1, 1, 1)
    clips = clips.expand(2, 3, DENSE_FRAMES, 3, 4, 4)  # (b, clips, 16, 3, h, w)
    sparse = to_sparse(clips)
    assert sparse.shape == (2, 3, NUM_SPARSE_FRAMES, 3, 4, 4)
    assert sparse[1, 2, :, 0, 0, 0].tolist() == list(SPARSE_INDICES)
    assert to_sparse(clips[0, 0]).shape == (NUM_SPARSE_FRAMES, 3, 4, 4)
    with pytest.raises(ValueError, match="dense clips"):
        to_sparse(torch.zeros(2, 5, 3, 4, 4))


def test_image_to_clip_from_array_pil_and_files(tmp_path):
    image = column_frames(1, 24, 40)[0]
    from_array = image_to_clip(image, size=24)
    assert from_array.shape == (NUM_SPARSE_FRAMES, 3, 24, 24)
    assert all(torch.equal(from_array[0], frame) for frame in from_array)
    assert torch.equal(from_array[0], frames_to_tensor(image[None], size=24)[0])
    assert torch.equal(image_to_clip(Image.fromarray(image), size=24), from_array)
    Image.fromarray(image).save(tmp_path / "image.png")
    assert torch.equal(image_to_clip(tmp_path / "image.png", size=24), from_array)
    Image.fromarray(image).convert("L").save(tmp_path / "grey.jpg")
    assert image_to_clip(str(tmp_path / "grey.jpg"), size=24).shape == (NUM_SPARSE_FRAMES, 3, 24, 24)


def test_image_to_clip_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.png"):
        image_to_clip(tmp_path / "missing.png")
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(ValueError, match="notes.png"):
        image_to_clip(tmp_path / "notes.png")
    with pytest.raises(ValueError, match="uint8 image"):
        image_to_clip(np.zeros((8, 8), dtype=np.uint8))
