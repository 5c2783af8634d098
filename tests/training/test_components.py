"""Optimiser schedule, EMA, checkpoints, the resumable sampler, annotations, token files, the objective."""

import json

import numpy as np
import pytest
import torch
from torch import nn

from divot.data.datasets import ClipDataset, ResumableSampler, collate_clips, read_annotations
from divot.data.token_files import TokenClipDataset, read_token_file, write_token_file
from divot.data.writers import write_video
from divot.diffusion.config import ScheduleConfig
from divot.diffusion.objective import DenoisingObjective, LossConfig, foreground_weights
from divot.diffusion.schedule import make_alphas_cumprod
from divot.training.checkpoint import CheckpointManager, resolve_resume
from divot.training.ema import EMA
from divot.training.engine import deepspeed_config
from divot.training.optim import OptimConfig, build_optimizer, lr_factor


def test_warmup_then_cosine_to_the_floor():
    cfg = OptimConfig(lr=1.0, warmup_steps=10, max_steps=110, min_lr_ratio=0.1)
    assert lr_factor(0, cfg) == pytest.approx(0.1)
    assert lr_factor(9, cfg) == pytest.approx(1.0)
    assert lr_factor(10, cfg) == pytest.approx(1.0)
    assert lr_factor(60, cfg) == pytest.approx(0.55)
    assert lr_factor(110, cfg) == pytest.approx(0.1)
    assert lr_factor(500, cfg) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="min_lr_ratio"):
        OptimConfig(min_lr_ratio=2.0)


def test_no_weight_decay_on_vectors():
    model = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4))
    opt = build_optimizer(list(model.named_parameters()), OptimConfig(weight_decay=0.1))
    decay, no_decay = opt.param_groups
    assert [p.ndim for p in decay["params"]] == [2] and decay["weight_decay"] == 0.1 and decay["lr"] == 1e-4
    assert len(no_decay["params"]) == 3 and no_decay["weight_decay"] == 0.0


def test_ema_tracks_applies_and_restores():
    lin = nn.Linear(2, 2)
    ema = EMA(list(lin.named_parameters()), decay=0.5)
    start = lin.weight.detach().clone()
    with torch.no_grad():
        lin.weight.add_(1.0)
    ema.num_updates = 100  # past the warm-up: decay 0.5
    ema.update()
    assert torch.allclose(ema.shadow["weight"], start + 0.5)
    with ema.applied():
        assert torch.allclose(lin.weight, start + 0.5)
    assert torch.allclose(lin.weight, start + 1.0)
    other = EMA(list(lin.named_parameters()), decay=0.5)
    other.load_state_dict(ema.state_dict())
    assert torch.equal(other.shadow["weight"], ema.shadow["weight"]) and other.num_updates == 101
    with pytest.raises(ValueError, match="missing"):
        EMA(list(nn.Linear(2, 3, bias=False).named_parameters())).load_state_dict({"shadow": {}, "num_updates": 0})


def test_checkpoints_are_atomic_pruned_and_found(tmp_path):
    manager = CheckpointManager(tmp_path, keep=2)
    assert manager.latest() is None and resolve_resume("auto", manager) is None
    for step in (1, 2, 3):
        folder = manager.prepare(step)
        torch.save({"step": step}, folder / "trainer.pt")
        manager.finalize(step)
    assert [p.name for p in manager.complete()] == ["step-00000002", "step-00000003"]
    # A save that died half-way leaves a .tmp folder: ignored.
    manager.prepare(4)
    assert manager.latest().name == "step-00000003"
    assert resolve_resume("auto", manager).name == "step-00000003"
    with pytest.raises(FileNotFoundError, match="not a checkpoint"):
        resolve_resume(str(tmp_path / "nowhere"), manager)


def test_sampler_resumes_mid_epoch_and_splits_ranks():
    s = ResumableSampler(10, seed=3)
    full = list(s)
    assert sorted(full) == list(range(10))
    s.set_position(0, 4)
    assert list(s) == full[4:] and len(s) == 6
    s.set_position(1, 0)
    assert list(s) != full
    ranks = [list(ResumableSampler(10, seed=3, rank=r, world_size=3)) for r in range(3)]
    assert all(len(r) == 4 for r in ranks) and set(sum(ranks, [])) == set(range(10))


def _video(path, value=0.5):
    frames = torch.full((16, 3, 32, 32), -1.0)
    frames[:, 0, 8:16, 8:16] = value
    return write_video(frames, path)


def test_annotations_from_folder_jsonl_csv_and_webvid(tmp_path):
    _video(tmp_path / "v" / "a.mp4")
    _video(tmp_path / "v" / "b.mp4")
    assert len(read_annotations(tmp_path / "v")) == 2
    (tmp_path / "m.jsonl").write_text(
        json.dumps({"video": "v/a.mp4", "caption": "x", "attributes": [{"colour": "red"}], "split": "train"}) + "\n"
        + json.dumps({"video": "v/b.mp4", "split": "val"}) + "\n")
    items = read_annotations(tmp_path / "m.jsonl", split="train")
    assert len(items) == 1 and items[0].labels == {"colour": "red"} and items[0].path == tmp_path / "v/a.mp4"
    (tmp_path / "w.csv").write_text("videoid,name,page_dir\na,a red square,v\n")
    (item,) = read_annotations(tmp_path / "w.csv")
    assert item.path == tmp_path / "v" / "a.mp4" and item.caption == "a red square"
    (tmp_path / "bad.jsonl").write_text(json.dumps({"file": "x"}) + "\n")
    with pytest.raises(ValueError, match="needs 'video'"):
        read_annotations(tmp_path / "bad.jsonl")
    with pytest.raises(ValueError, match="no videos"):
        read_annotations(tmp_path / "m.jsonl", split="test")
    with pytest.raises(FileNotFoundError):
        read_annotations(tmp_path / "missing.jsonl")


def test_unreadable_videos_are_skipped_and_counted(tmp_path):
    _video(tmp_path / "good.mp4")
    (tmp_path / "bad.mp4").write_text("not a video")
    items = read_annotations(tmp_path)
    ds = ClipDataset(items, frame_size=32, seed=0)
    batch = collate_clips([ds[i] for i in range(len(ds))])
    assert batch["num_items"] == 2 and batch["num_skipped"] == 1
    assert batch["dense"].shape == (1, 16, 3, 32, 32) and batch["sparse"].shape == (1, 5, 3, 32, 32)
    assert torch.equal(batch["sparse"][0], batch["dense"][0, [0, 4, 8, 12, 15]])


def test_channel_shuffle_permutes_the_colour_channels_reproducibly(tmp_path):
    _video(tmp_path / "a.mp4")  # a red square: only channel 0 is lit
    items = read_annotations(tmp_path)
    plain = ClipDataset(items, frame_size=32, seed=0)[0]["dense"]
    lit = []
    for epoch in range(12):
        ds = ClipDataset(items, frame_size=32, seed=0, channel_shuffle=True)
        ds.set_epoch(epoch)
        dense = ds[0]["dense"]
        assert torch.equal(dense, ds[0]["dense"])  # same (seed, epoch, item): same permutation
        # the pixels are the plain clip's, only the channel order differs
        assert torch.equal(dense.sort(dim=1).values, plain.sort(dim=1).values)
        lit.append(int(dense[:, :, 8:16, 8:16].mean(dim=(0, 2, 3)).argmax()))
    assert set(lit) == {0, 1, 2}  # over epochs the square turns up red, green and blue


def test_token_file_round_trip_and_dataset(tmp_path):
    _video(tmp_path / "a.mp4")
    tokens = torch.randn(2, 16, 32)
    write_token_file(tmp_path / "t.safetensors", tokens, ["a.mp4", "missing.mp4"], source="test")
    tf = read_token_file(tmp_path / "t.safetensors")
    assert torch.equal(tf.tokens, tokens) and tf.videos[0] == tmp_path / "a.mp4" and tf.source == "test"
    ds = TokenClipDataset(tf, frame_size=32)
    assert ds[0]["dense"].shape == (16, 3, 32, 32) and ds[1] is None
    with pytest.raises(ValueError, match="one video"):
        write_token_file(tmp_path / "u.safetensors", tokens, ["a.mp4"])
    from safetensors.torch import save_file
    save_file({"tokens": tokens}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(ValueError, match="not a Divot token file"):
        read_token_file(tmp_path / "plain.safetensors")


def test_v_prediction_target_matches_the_schedule():
    sched = ScheduleConfig()
    obj = DenoisingObjective(sched)
    x0, noise = torch.randn(2, 3, 4, 8, 8), torch.randn(2, 3, 4, 8, 8)
    t = torch.tensor([0, 999])
    x_t, v = obj.target_and_input(x0, noise, t)
    a = make_alphas_cumprod(sched)[t].view(2, 1, 1, 1, 1).float()
    assert torch.allclose(x_t, a.sqrt() * x0 + (1 - a).sqrt() * noise, atol=1e-5)
    assert torch.allclose(v, a.sqrt() * noise - (1 - a).sqrt() * x0, atol=1e-5)
    # Zero terminal SNR: at t = 999 the input is pure noise and v = -x0.
    assert torch.allclose(v[1], -x0[1], atol=1e-5)


def test_foreground_pixels_weigh_more():
    x0 = torch.full((1, 3, 2, 8, 8), -1.0)
    x0[:, :, :, 2:4, 2:4] = 1.0
    w = foreground_weights(x0, 5.0, 0.2)
    assert w.shape == (1, 1, 2, 8, 8) and w.sum() == 2 * (60 + 4 * 5)
    obj = DenoisingObjective(ScheduleConfig(), LossConfig(foreground_weight=5.0))
    zero = obj.per_sample_loss(lambda x, t, c: obj.target_and_input(x0, torch.zeros_like(x0), t)[1], x0, None,
                               torch.zeros_like(x0), torch.tensor([10]))
    assert zero.item() == pytest.approx(0.0, abs=1e-10)


def test_layout_term_reads_the_pooled_frames_back_and_trains_the_tokenizer():
    from divot.diffusion.detokenizer import Detokenizer
    from divot.tokenizer.model import VideoTokenizer
    from divot.training.tokenizer_config import DataConfig, LayoutConfig, TokenizerTrainConfig
    from divot.training.tokenizer_model import TokenizerDiffusionModel, trainable_named_parameters

    torch.manual_seed(0)
    tok, detok = VideoTokenizer.from_preset("tiny"), Detokenizer.from_preset("tiny")
    objective = DenoisingObjective(detok.config.schedule, LossConfig(foreground_weight=5.0))
    model = TokenizerDiffusionModel("T1", tok, detok, objective, layout_weight=2.0, layout_size=4, grid_weight=0.5)
    named = dict(trainable_named_parameters(model, train_condition=True))
    assert "layout_head.weight" in named and any(n.startswith("tokenizer.resampler.") for n in named)
    sparse = torch.rand(2, 5, 3, 32, 32) * 2 - 1
    batch = {"sparse": sparse, "dense": torch.rand(2, 16, 3, 32, 32) * 2 - 1}
    out = model(batch)
    assert out["loss"].item() == pytest.approx(
        out["denoise_loss"].item() + 2.0 * out["layout_loss"].item() + 0.5 * out["grid_loss"].item(), rel=1e-5)
    out["loss"].backward()
    assert tok.resampler.queries.grad.abs().sum() > 0
    assert detok.unet.context_grid.to_grid.weight.grad.abs().sum() > 0
    # A head that outputs the pooled frames exactly scores 0.
    target = torch.nn.functional.adaptive_avg_pool2d(sparse.flatten(0, 1), 4).reshape(2, -1)
    with torch.no_grad():
        model.layout_head.weight.zero_()
    model.layout_head.bias = nn.Parameter(target[0].clone())
    assert model.layout_loss(torch.zeros(1, 16, 32), sparse[:1]).item() == pytest.approx(0.0, abs=1e-10)
    with pytest.raises(ValueError, match="stage T1 only"):
        TokenizerDiffusionModel("T2", tok, detok, objective, layout_weight=1.0)
    with pytest.raises(ValueError, match="T1 only"):
        TokenizerTrainConfig(stage="T2", data=DataConfig(train="x"), layout=LayoutConfig(weight=1.0))
    with pytest.raises(ValueError, match="channel_shuffle"):
        TokenizerTrainConfig(stage="T3", data=DataConfig(token_file="t.safetensors", channel_shuffle=True))


def test_deepspeed_config_comes_from_the_run_config():
    cfg = OptimConfig(grad_accum=4, grad_clip=0.5)
    ds = deepspeed_config(cfg, micro_batch_size=2, world_size=2, extra={"zero_optimization": {"stage": 2}})
    assert ds["train_batch_size"] == 16 and ds["gradient_clipping"] == 0.5 and ds["zero_optimization"]["stage"] == 2
    with pytest.raises(ValueError, match="set by the run config"):
        deepspeed_config(cfg, 2, 2, extra={"gradient_accumulation_steps": 8})


@pytest.mark.parametrize("name", ["t1_shapes_tiny", "t1_shapes_tiny_colours", "t2_shapes_tiny",
                                  "t2_shapes_tiny_more", "t3_shapes_tiny",
                                  "t1_paper", "t2_paper", "t3_paper"])
def test_shipped_run_configs_parse(name):
    from pathlib import Path

    from divot.config import load_yaml
    from divot.training.tokenizer_config import TokenizerTrainConfig

    path = Path(__file__).resolve().parents[2] / "configs" / "tokenizer" / f"{name}.yaml"
    cfg = load_yaml(TokenizerTrainConfig, path)
    assert cfg.stage == name[:2].upper()


def test_centred_silhouettes_drop_colour_place_and_size():
    """The shape term's target: the same shape gives the same silhouette whatever its colour, place or size,
    and different shapes give different ones."""
    from divot.data.shapes.world import SHAPES, draw_object
    from divot.training.layout_targets import centred_masks

    def frame(shape, rgb, cx, cy, half):
        canvas = np.zeros((1, 32, 32, 3), dtype=np.float32)
        draw_object(canvas, shape, rgb, np.array([cx]), np.array([cy]), np.array([half]), True)
        return torch.from_numpy(canvas).permute(0, 3, 1, 2) / 127.5 - 1.0  # (1, 3, 32, 32) in [-1, 1]

    masks = {}
    for shape in SHAPES:
        frames = torch.cat([frame(shape, (255, 0, 0), 10.0, 12.0, 6.0), frame(shape, (0, 0, 255), 20.0, 19.0, 6.0),
                            frame(shape, (0, 255, 255), 16.0, 16.0, 9.0)])[None]  # (1, 3, 3, 32, 32)
        m, present = centred_masks(frames, 12, 0.2)
        assert m.shape == (1, 3, 12, 12) and present.all()
        assert (m[0, 1] - m[0, 0]).abs().mean() < 0.03 and (m[0, 2] - m[0, 0]).abs().mean() < 0.08
        masks[shape] = m[0, 0]
    for a in SHAPES:
        for b in SHAPES:
            if a < b:
                assert (masks[a] - masks[b]).abs().mean() > 0.08, (a, b)
    empty = torch.full((1, 2, 3, 32, 32), -1.0)
    m, present = centred_masks(empty, 12, 0.2)
    assert not present.any() and m.abs().sum() == 0
    with pytest.raises(ValueError, match="b, t, 3, h, w"):
        centred_masks(empty[0], 12, 0.2)


def test_shape_term_reads_the_silhouettes_and_trains_the_tokenizer():
    from divot.diffusion.detokenizer import Detokenizer
    from divot.tokenizer.model import VideoTokenizer
    from divot.training.layout_targets import centred_masks
    from divot.training.tokenizer_config import DataConfig, LayoutConfig, TokenizerTrainConfig
    from divot.training.tokenizer_model import TokenizerDiffusionModel, trainable_named_parameters

    torch.manual_seed(0)
    tok, detok = VideoTokenizer.from_preset("tiny"), Detokenizer.from_preset("tiny")
    objective = DenoisingObjective(detok.config.schedule, LossConfig(foreground_weight=5.0))
    model = TokenizerDiffusionModel("T1", tok, detok, objective, shape_weight=3.0, shape_size=6)
    assert model.layout_head is None and "shape_head.weight" in dict(trainable_named_parameters(model, True))
    sparse = torch.full((2, 5, 3, 32, 32), -1.0)
    sparse[:, :, 0, 8:20, 10:18] = 1.0  # a red box in every frame
    out = model({"sparse": sparse, "dense": torch.rand(2, 16, 3, 32, 32) * 2 - 1})
    assert out["loss"].item() == pytest.approx(out["denoise_loss"].item() + 3.0 * out["shape_loss"].item(), rel=1e-5)
    out["loss"].backward()
    assert tok.resampler.queries.grad.abs().sum() > 0 and model.shape_head.weight.grad.abs().sum() > 0
    target, _ = centred_masks(sparse[:1], 6, 0.2)
    with torch.no_grad():
        model.shape_head.weight.zero_()
        model.shape_head.bias.copy_(target.flatten())
    assert model.shape_loss(torch.zeros(1, 16, 32), sparse[:1]).item() == pytest.approx(0.0, abs=1e-10)
    with pytest.raises(ValueError, match="stage T1 only"):
        TokenizerDiffusionModel("T3", None, detok, objective, shape_weight=1.0)
    with pytest.raises(ValueError, match="T1 only"):
        TokenizerTrainConfig(stage="T2", data=DataConfig(train="x"), layout=LayoutConfig(shape_weight=1.0))
    with pytest.raises(ValueError, match="shape_size"):
        LayoutConfig(shape_size=1)


def test_word_dropout_hides_only_labelled_text_and_repeats_with_its_seed():
    from divot.constants import IGNORE_INDEX
    from divot.training.word_dropout import drop_target_words

    ids = torch.arange(10, 210).reshape(2, 100)
    labels = ids.clone()
    labels[:, :40] = IGNORE_INDEX  # the prompt (and the clips) carry no label
    keep = [95, 195]  # e.g. </s>: labelled, never dropped
    out = drop_target_words(ids, labels, 0.5, unk_id=0, keep_ids=keep, seed=7)
    dropped = out == 0
    assert torch.equal(out[~dropped], ids[~dropped]) and torch.equal(ids, torch.arange(10, 210).reshape(2, 100))
    assert not dropped[:, :40].any() and not dropped[ids == 95].any() and not dropped[ids == 195].any()
    assert 0.3 < dropped[:, 40:].float().mean() < 0.7
    assert torch.equal(out, drop_target_words(ids, labels, 0.5, 0, keep, seed=7))
    assert not torch.equal(out, drop_target_words(ids, labels, 0.5, 0, keep, seed=8))
    assert drop_target_words(ids, labels, 0.0, 0, keep, seed=7) is ids
    with pytest.raises(ValueError, match="word dropout rate"):
        drop_target_words(ids, labels, 1.0, 0, keep, seed=7)
