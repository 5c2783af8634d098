"""Each part loads in the dtype and on the device asked for, reads only what a call uses, and never holds two
copies of its weights (``divot.weights_io``, ``PretrainedMixin.from_pretrained``, ``divot.chat.parts``)."""

import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from divot.chat import Divot
from divot.diffusion import Detokenizer
from divot.tokenizer import VideoTokenizer
from divot.tokenizer import model as tokenizer_model
from divot.tokenizer.config import tokenizer_preset
from divot.weights_io import cast_floating, load_safetensors


@pytest.fixture()
def model_copy(divot_model_dir, tmp_path):
    return shutil.copytree(divot_model_dir, tmp_path / "model")


@pytest.fixture(scope="module")
def frozen_tokenizer_dir(tmp_path_factory):
    config = tokenizer_preset("tiny")
    config.frame_encoder.trainable = False
    torch.manual_seed(0)
    return VideoTokenizer(config).save_pretrained(tmp_path_factory.mktemp("frozen_tokenizer"))


def _clips(config, n=3):
    gen = torch.Generator().manual_seed(1)
    return torch.rand(n, config.num_frames, 3, config.frame_size, config.frame_size, generator=gen) * 2 - 1


def test_the_reader_gives_what_safetensors_gives_in_any_dtype(tmp_path):
    tensors = {"w": torch.randn(5, 3), "ids": torch.arange(4), "scalar": torch.tensor(2.5, dtype=torch.bfloat16),
               "empty": torch.zeros(0, 3), "flags": torch.tensor([True, False])}
    path = tmp_path / "t.safetensors"
    save_file(tensors, str(path))
    reference = load_file(str(path))
    same = load_safetensors(path)
    assert all(torch.equal(same[k], reference[k]) and same[k].dtype == reference[k].dtype for k in tensors)
    half = load_safetensors(path, cast_floating(torch.bfloat16))
    assert half["w"].dtype == torch.bfloat16 and torch.equal(half["w"], reference["w"].to(torch.bfloat16))
    assert half["ids"].dtype == torch.int64 and half["flags"].dtype == torch.bool


@pytest.mark.parametrize("damage", ["not safetensors", "truncated"])
def test_a_damaged_file_is_named(tmp_path, damage):
    path = tmp_path / "t.safetensors"
    save_file({"w": torch.randn(64, 64)}, str(path))
    data = path.read_bytes()
    path.write_bytes(b"garbage!" * 4 if damage == "not safetensors" else data[: len(data) - 100])
    with pytest.raises(ValueError, match="t.safetensors"):
        load_safetensors(path)


def test_a_tokenizer_loads_in_bf16_and_its_tokens_stay_close(frozen_tokenizer_dir):
    full = VideoTokenizer.from_pretrained(frozen_tokenizer_dir)
    half = VideoTokenizer.from_pretrained(frozen_tokenizer_dir, dtype=torch.bfloat16)
    assert {p.dtype for p in half.parameters()} == {torch.bfloat16}
    clips = _clips(full.config)
    reference = full.encode(clips, precision="fp32")
    tokens = half.encode(clips)  # "auto" runs low-precision weights under their autocast
    assert tokens.dtype == torch.float32
    assert (tokens - reference).abs().max() < 0.1 * reference.abs().max()
    with pytest.raises(ValueError, match="float32 weights"):
        half.encode(clips, precision="fp32")


def test_auto_holds_the_frozen_vit_matrices_in_bf16_with_identical_tokens(frozen_tokenizer_dir, monkeypatch):
    monkeypatch.setattr(tokenizer_model, "bf16_is_fast", lambda device: True)
    full = VideoTokenizer.from_pretrained(frozen_tokenizer_dir)
    auto = VideoTokenizer.from_pretrained(frozen_tokenizer_dir, dtype="auto")
    matrices = set(auto.frozen_vit_matrices())
    assert matrices and all(k.startswith("frame_encoder.") for k in matrices)
    for name, param in auto.named_parameters():
        assert param.dtype == (torch.bfloat16 if name in matrices else torch.float32), name
    clips = _clips(full.config)
    # bf16 autocast rounds exactly these weights on every call: holding them rounded changes no bit
    assert torch.equal(auto.encode(clips), full.encode(clips, precision="bf16"))


def test_auto_keeps_float32_where_bf16_is_slow(frozen_tokenizer_dir, monkeypatch):
    monkeypatch.setattr(tokenizer_model, "bf16_is_fast", lambda device: False)
    auto = VideoTokenizer.from_pretrained(frozen_tokenizer_dir, dtype="auto")
    assert {p.dtype for p in auto.parameters()} == {torch.float32}


def test_a_trainable_vit_is_never_cast(divot_model_dir, monkeypatch):
    monkeypatch.setattr(tokenizer_model, "bf16_is_fast", lambda device: True)
    tokenizer = VideoTokenizer.from_pretrained(divot_model_dir / "tokenizer", dtype="auto")
    assert tokenizer.config.frame_encoder.trainable and tokenizer.frozen_vit_matrices() == []
    assert {p.dtype for p in tokenizer.parameters()} == {torch.float32}
    with pytest.raises(ValueError, match="trainable"):
        tokenizer.cast_frozen_vit()


@pytest.mark.parametrize("sampler", ["reference", "ddim"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_a_detokenizer_renders_in_low_precision(divot_model_dir, dtype, sampler):
    path = divot_model_dir / "detokenizer"
    full, low = Detokenizer.from_pretrained(path), Detokenizer.from_pretrained(path, dtype=dtype)
    assert next(low.unet.parameters()).dtype == dtype and low.uncond_tokens.dtype == torch.float32
    tokens = torch.randn(1, full.config.num_tokens, full.config.token_dim, generator=torch.Generator().manual_seed(0))
    render = lambda m: m.decode(tokens, num_steps=2, sampler=sampler, progress=False,  # noqa: E731
                                generator=torch.Generator().manual_seed(0))
    reference, frames = render(full), render(low)
    assert frames.shape == reference.shape and torch.isfinite(frames).all()
    assert (frames.float() - reference).abs().mean() < 0.05


def test_divot_takes_a_dtype_per_part(model_copy, shapes_video):
    model = Divot.from_pretrained(model_copy, dtype={"tokenizer": "bf16", "llm": torch.float32,
                                                     "detokenizer": torch.bfloat16})
    assert model.llm.dtype == torch.float32
    assert isinstance(model.ask(shapes_video, "What colour is the object?", max_new_tokens=4, seed=0), str)
    assert {p.dtype for p in model.tokenizer.parameters()} == {torch.bfloat16}
    video = model.generate_video("a red circle", num_steps=1, sampler="ddim")
    assert next(model.detokenizer.unet.parameters()).dtype == torch.bfloat16 and len(video) > 0


def test_per_part_options_name_unknown_parts_and_dtypes(model_copy):
    with pytest.raises(ValueError, match="unknown part"):
        Divot.from_pretrained(model_copy, device={"vae": "cpu"})
    with pytest.raises(ValueError, match="unknown dtype"):
        Divot.from_pretrained(model_copy, dtype={"detokenizer": "float8"})
    with pytest.raises(ValueError, match="quantization"):
        Divot.from_pretrained(model_copy, quantization="3bit")


def test_generating_never_reads_the_video_tokenizer(model_copy, shapes_video, monkeypatch):
    loads = []
    real = VideoTokenizer.from_pretrained.__func__
    monkeypatch.setattr(VideoTokenizer, "from_pretrained",
                        classmethod(lambda cls, *a, **k: loads.append(a) or real(cls, *a, **k)))
    model = Divot.from_pretrained(model_copy)
    model.generate_video("a red circle", num_steps=1, sampler="ddim")
    model.tell_story("Generate a story about a red circle.", num_segments=1, num_steps=1, sampler="ddim",
                     max_new_tokens=8)
    assert loads == []
    model.ask(shapes_video, "What colour is the object?", max_new_tokens=4, seed=0)
    assert len(loads) == 1


def test_a_damaged_tokenizer_stops_only_what_needs_it(model_copy, shapes_video):
    (model_copy / "tokenizer" / "model.safetensors").write_bytes(b"not a safetensors file")
    model = Divot.from_pretrained(model_copy)
    assert len(model.generate_video("a red circle", num_steps=1, sampler="ddim")) > 0
    with pytest.raises(ValueError, match=r"cannot load the tokenizer from .*tokenizer"):
        model.ask(shapes_video, "What colour is the object?", max_new_tokens=4)


def test_a_tokenizer_holding_cast_weights_keeps_the_identity_of_its_file(frozen_tokenizer_dir, monkeypatch):
    from divot.data.token_cache import tokenizer_identity

    monkeypatch.setattr(tokenizer_model, "bf16_is_fast", lambda device: True)
    saved = tokenizer_identity(VideoTokenizer.from_pretrained(frozen_tokenizer_dir))["id"]
    assert tokenizer_identity(VideoTokenizer.from_pretrained(frozen_tokenizer_dir, dtype="auto"))["id"] == saved
    assert tokenizer_identity(VideoTokenizer.from_pretrained(frozen_tokenizer_dir).cast_frozen_vit())["id"] == saved
    assert tokenizer_identity(VideoTokenizer.from_pretrained(frozen_tokenizer_dir, dtype=torch.bfloat16))["id"] != saved


def test_the_cli_places_each_part(model_copy):
    from divot.cli import build_parser
    from divot.commands.model_options import load_model

    args = build_parser().parse_args(["generate", "a red circle", "--out", "x.mp4", "--model", str(model_copy),
                                      "--device", "cpu",
                                      "--detokenizer-dtype", "bfloat16", "--detokenizer-device", "cpu",
                                      "--tokenizer-dtype", "float32"])
    model = load_model(args)
    assert model._detokenizer.options == {"device": torch.device("cpu"), "dtype": torch.bfloat16}
    assert model._tokenizer.options == {"device": torch.device("cpu"), "dtype": torch.float32}
    assert model.llm.dtype == torch.float32
