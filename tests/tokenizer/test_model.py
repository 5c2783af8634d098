import dataclasses

import pytest
import torch

from divot.config import ConfigError, apply_overrides
from divot.tokenizer import VideoTokenizer, tokenizer_preset


def tiny(**changes) -> VideoTokenizer:
    torch.manual_seed(0)
    cfg = tokenizer_preset("tiny")
    if changes:
        cfg = apply_overrides(cfg, [f"{k}={v}" for k, v in changes.items()])
    return VideoTokenizer(cfg)


def clips(b=2, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 5, 3, size, size, generator=g) * 2 - 1


def test_paper_preset_parameter_counts():
    with torch.device("meta"):
        model = VideoTokenizer.from_preset("paper")
    count = {name: sum(p.numel() for p in getattr(model, name).parameters() if p.requires_grad)
             for name in ("temporal_encoder", "spatial_norm", "spatial_temporal", "resampler", "frame_encoder")}
    assert count["temporal_encoder"] == 44_303_872  # 44.30 M
    assert count["spatial_temporal"] + count["spatial_norm"] == 50_419_712  # 50.42 M
    assert count["resampler"] == 76_912_384  # 76.91 M
    assert sum(count.values()) == 171_635_968  # the reference's trainable count; the ViT is frozen
    frozen = sum(p.numel() for p in model.frame_encoder.parameters())
    assert 625e6 < frozen < 640e6  # ViT-H/14 visual tower without ln_post / proj


def test_output_shape_and_tiny_preset():
    model = tiny().eval()
    out = model(clips())
    cfg = model.config
    assert out.shape == (2, cfg.num_tokens, cfg.token_dim)
    assert torch.isfinite(out).all()


def test_position_tables_are_initialised_at_the_preset_scale():
    # The resampler is blind to token order: the tiny preset's tables start at unit scale so fresh tokens
    # carry where the object is (docs/experiments.md, 2026-12-01 "looking for motion"); the paper preset keeps the ViT-style 0.02.
    from divot.tokenizer.config import tokenizer_preset

    assert tokenizer_preset("paper").spatial_temporal.pos_init_std == 0.02
    st = tiny().spatial_temporal
    for table in (st.pos_embed_spatial, st.pos_embed_temporal):
        assert 0.7 < table.std().item() < 1.3


def test_reference_zero_init_outputs_constant_tokens():
    # With the reference init the temporal encoder outputs zeros: every clip gets the same tokens.
    model = tiny(**{"temporal.zero_init": True, "output_norm": "none"}).eval()
    te_out = model.temporal_encoder(torch.randn(3, 5, model.config.frame_encoder.width))
    assert torch.count_nonzero(te_out) == 0
    out = model(clips(b=2))
    assert torch.allclose(out[0], out[1])


def test_frozen_frame_encoder_gets_no_gradients_and_stays_in_eval():
    model = tiny(**{"frame_encoder.trainable": False})
    model.train()
    assert not model.frame_encoder.training and model.temporal_encoder.training
    model(clips()).square().mean().backward()
    assert all(p.grad is None for p in model.frame_encoder.parameters())
    assert all(p.grad is not None for p in model.resampler.parameters())


def test_trainable_frame_encoder_option_trains():
    model = tiny(**{"frame_encoder.trainable": True}).train()
    model(clips()).square().mean().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.frame_encoder.parameters())


def test_save_load_round_trip(tmp_path):
    model = tiny()
    model.train()
    model(clips())  # updates batch-norm running statistics
    model.eval()
    model.save_pretrained(tmp_path / "tok")
    loaded = VideoTokenizer.from_pretrained(tmp_path / "tok").eval()
    assert dataclasses.asdict(loaded.config) == dataclasses.asdict(model.config)
    x = clips()
    assert torch.equal(loaded(x), model(x))


def test_from_pretrained_is_strict(tmp_path):
    from safetensors.torch import load_file, save_file

    tiny().save_pretrained(tmp_path / "tok")
    state = load_file(str(tmp_path / "tok" / "model.safetensors"))
    state.pop("resampler.queries")
    save_file(state, str(tmp_path / "tok" / "model.safetensors"))
    with pytest.raises(ValueError, match="resampler.queries"):
        VideoTokenizer.from_pretrained(tmp_path / "tok")


def test_from_pretrained_missing_dir_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        VideoTokenizer.from_pretrained(tmp_path / "nowhere")


@pytest.mark.parametrize("shape", [(2, 4, 3, 32, 32), (2, 5, 1, 32, 32), (5, 3, 32, 32)])
def test_bad_clip_shapes_are_rejected(shape):
    with pytest.raises(ValueError, match="expects clips"):
        tiny()(torch.zeros(shape))


def test_unknown_preset_and_config_keys():
    with pytest.raises(ValueError, match="unknown tokenizer preset"):
        VideoTokenizer.from_preset("huge")
    with pytest.raises(ConfigError, match="resampler.num_querys"):
        apply_overrides(tokenizer_preset("tiny"), ["resampler.num_querys=3"])


def test_encode_batches_match_single_forward():
    model = tiny().eval()
    x = clips(b=5)
    with torch.no_grad():
        full = model(x)
    batched = model.encode(x, batch_size=2, precision="fp32")
    assert torch.allclose(batched, full, atol=1e-5)


def test_bf16_autocast_close_to_fp32():
    model = tiny().eval()
    x = clips(b=2)
    fp32 = model.encode(x, precision="fp32")
    bf16 = model.encode(x, precision="bf16")
    assert bf16.dtype == torch.float32
    rel = (bf16 - fp32).norm() / fp32.norm()
    assert rel < 0.05


def test_any_input_size_is_resized_for_the_frame_encoder():
    model = tiny().eval()
    with torch.no_grad():
        out = model(clips(size=48))
    assert out.shape[1:] == (model.config.num_tokens, model.config.token_dim)
