"""Equivalence with the reference tokenizer: sizes from the golden JSON, folder from DIVOT_GOLDEN_DIR."""

import json

import pytest
import torch
from safetensors.torch import load_file

from divot.cli import main
from divot.convert.tokenizer import config_from_reference, convert_tokenizer
from divot.tokenizer import VideoTokenizer

pytestmark = pytest.mark.golden


@pytest.fixture(scope="module")
def golden(golden_dir):
    meta = json.loads((golden_dir / "tokenizer_config.json").read_text())
    io = load_file(str(golden_dir / "tokenizer_io.safetensors"))
    config = config_from_reference(meta["tokenizer_config"], meta["open_clip_vision_cfg"])
    config.frame_size = io["video"].shape[-1]
    model = convert_tokenizer(golden_dir / "tokenizer_official.safetensors",
                              golden_dir / "open_clip_visual.safetensors", config)
    return model, io, meta


def test_frame_encoder_matches_reference(golden):
    model, io, _ = golden
    with torch.no_grad():
        tokens = model.frame_encoder(io["video"][0], keep_class_token=True)
    assert tokens.shape == io["vit_tokens"].shape
    assert (tokens - io["vit_tokens"]).abs().max() <= 1e-4


def test_tokenizer_features_match_reference(golden):
    model, io, meta = golden
    with torch.no_grad():
        features = model(io["video"])
    assert features.shape == (1, meta["tokenizer_config"]["down_num_tokens"], meta["tokenizer_config"]["resampler_dim"])
    assert (features - io["features"]).abs().max() <= 1e-4


def test_convert_cli_round_trip(golden_dir, golden, tmp_path):
    model, io, _ = golden
    config_path = tmp_path / "ref.json"
    config_path.write_text((golden_dir / "tokenizer_config.json").read_text())
    out = tmp_path / "tok"
    assert main(["convert", "tokenizer", "--tokenizer-ckpt", str(golden_dir / "tokenizer_official.safetensors"),
                 "--clip-ckpt", str(golden_dir / "open_clip_visual.safetensors"),
                 "--config", str(config_path), "--out", str(out)]) == 0
    loaded = VideoTokenizer.from_pretrained(out)
    loaded.config.frame_size = model.config.frame_size
    with torch.no_grad():
        assert torch.equal(loaded(io["video"]), model(io["video"]))


def test_converter_accepts_bin_pickles(golden_dir, tmp_path, golden):
    model, io, meta = golden
    ckpt = tmp_path / "Divot_tokenizer.bin"
    torch.save(load_file(str(golden_dir / "tokenizer_official.safetensors")), ckpt)
    clip = tmp_path / "open_clip_pytorch_model.bin"
    torch.save(load_file(str(golden_dir / "open_clip_visual.safetensors")), clip)
    config = config_from_reference(meta["tokenizer_config"], meta["open_clip_vision_cfg"])
    again = convert_tokenizer(ckpt, clip, config)
    with torch.no_grad():
        assert torch.equal(again(io["video"]), model(io["video"]))


def test_converter_accepts_vit_model_keys_in_tokenizer_file(golden_dir, tmp_path, golden):
    model, io, meta = golden
    state = load_file(str(golden_dir / "tokenizer_official.safetensors"))
    for k, v in load_file(str(golden_dir / "open_clip_visual.safetensors")).items():
        state["vit_model." + k[len("visual."):]] = v
    ckpt = tmp_path / "with_vit.bin"
    torch.save(state, ckpt)
    config = config_from_reference(meta["tokenizer_config"], meta["open_clip_vision_cfg"])
    again = convert_tokenizer(ckpt, None, config)
    with torch.no_grad():
        assert torch.equal(again(io["video"]), model(io["video"]))


def test_converter_names_missing_keys(golden_dir, tmp_path, golden):
    _, _, meta = golden
    state = load_file(str(golden_dir / "tokenizer_official.safetensors"))
    del state["image_proj_model.down_sampler.latents"]
    state["image_proj_model.extra.weight"] = torch.zeros(1)
    ckpt = tmp_path / "broken.bin"
    torch.save(state, ckpt)
    config = config_from_reference(meta["tokenizer_config"], meta["open_clip_vision_cfg"])
    with pytest.raises(ValueError, match=r"resampler\.queries.*spatial_temporal\.extra\.weight|missing key"):
        convert_tokenizer(ckpt, golden_dir / "open_clip_visual.safetensors", config)


def test_converter_rejects_non_clip_checkpoint(golden_dir, tmp_path, golden):
    _, _, meta = golden
    bogus = tmp_path / "bogus.bin"
    torch.save({"weight": torch.zeros(2)}, bogus)
    config = config_from_reference(meta["tokenizer_config"], meta["open_clip_vision_cfg"])
    with pytest.raises(ValueError, match="visual"):
        convert_tokenizer(golden_dir / "tokenizer_official.safetensors", bogus, config)
