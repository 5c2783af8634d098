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


def _with_nested_vit(golden_dir, prefix: str, text_tower: bool = False) -> dict[str, torch.Tensor]:
    """The golden tokenizer file with the golden OpenCLIP ``visual.*`` weights nested under ``prefix`` (and,
    optionally, a few OpenCLIP text-tower keys beside them, shaped from the vision width)."""
    state = load_file(str(golden_dir / "tokenizer_official.safetensors"))
    visual = load_file(str(golden_dir / "open_clip_visual.safetensors"))
    for k, v in visual.items():
        state[prefix + k[len("visual."):]] = v
    if text_tower:
        root = prefix[: -len("visual.")]
        width = visual["visual.conv1.weight"].shape[0]
        state[root + "token_embedding.weight"] = torch.randn(10, width)
        state[root + "positional_embedding"] = torch.randn(7, width)
        state[root + "transformer.resblocks.0.attn.in_proj_weight"] = torch.randn(3 * width, width)
        state[root + "ln_final.weight"] = torch.ones(width)
        state[root + "text_projection"] = torch.randn(width, width)
        state[root + "logit_scale"] = torch.tensor(4.6)
    return state


def _assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    different = [k for k in sa if not torch.equal(sa[k], sb[k])]
    assert not different, f"{len(different)} tensor(s) differ, e.g. {different[:5]}"


@pytest.mark.parametrize(("prefix", "text_tower"), [
    ("vit_model.model.visual.", True),  # the reference implementation's layout
    ("vit_model.model.visual.", False),
    ("vit_model.visual.", True),
])
def test_converter_takes_nested_vit_from_tokenizer_file(golden_dir, tmp_path, golden, prefix, text_tower, caplog):
    model, _, meta = golden
    ckpt = tmp_path / "Divot_tokenizer.bin"
    torch.save(_with_nested_vit(golden_dir, prefix, text_tower), ckpt)
    config = config_from_reference(meta["tokenizer_config"], meta["open_clip_vision_cfg"])
    with caplog.at_level("INFO", logger="divot.convert.tokenizer"):
        again = convert_tokenizer(ckpt, None, config)
    _assert_same_weights(again, model)
    assert ("6 OpenCLIP text-tower key(s)" in caplog.text) == text_tower


def test_convert_cli_without_clip_ckpt_on_reference_layout(golden_dir, tmp_path, golden):
    model, _, _ = golden
    ckpt = tmp_path / "Divot_tokenizer.bin"
    torch.save(_with_nested_vit(golden_dir, "vit_model.model.visual.", text_tower=True), ckpt)
    config_path = tmp_path / "ref.json"
    config_path.write_text((golden_dir / "tokenizer_config.json").read_text())
    out = tmp_path / "tok"
    assert main(["convert", "tokenizer", "--tokenizer-ckpt", str(ckpt), "--config", str(config_path),
                 "--out", str(out)]) == 0
    _assert_same_weights(VideoTokenizer.from_pretrained(out), model)


def test_converter_rejects_vit_under_two_nestings(golden_dir, tmp_path, golden):
    _, _, meta = golden
    state = _with_nested_vit(golden_dir, "vit_model.model.visual.")
    state.update({k: v for k, v in _with_nested_vit(golden_dir, "vit_model.visual.").items()
                  if k.startswith("vit_model.")})
    ckpt = tmp_path / "two_vits.bin"
    torch.save(state, ckpt)
    config = config_from_reference(meta["tokenizer_config"], meta["open_clip_vision_cfg"])
    with pytest.raises(ValueError, match=r"two_vits\.bin.*more than one nesting.*--clip-ckpt"):
        convert_tokenizer(ckpt, None, config)


def test_converter_without_vit_asks_for_clip_ckpt(golden_dir, tmp_path, golden):
    _, _, meta = golden
    state = _with_nested_vit(golden_dir, "vit_model.model.visual.", text_tower=True)
    state = {k: v for k, v in state.items() if not k.startswith("vit_model.model.visual.")}  # text tower only
    ckpt = tmp_path / "no_vit.bin"
    torch.save(state, ckpt)
    config = config_from_reference(meta["tokenizer_config"], meta["open_clip_vision_cfg"])
    with pytest.raises(ValueError, match=r"no_vit\.bin: no ViT keys.*vit_model\.model\.visual\..*--clip-ckpt"):
        convert_tokenizer(ckpt, None, config)
    with pytest.raises(ValueError, match="--clip-ckpt"):
        convert_tokenizer(golden_dir / "tokenizer_official.safetensors", None, config)


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
