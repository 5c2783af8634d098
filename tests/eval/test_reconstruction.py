"""Reconstruction: one video, a folder (skips counted, resume), and the ``divot reconstruct`` command."""

import json
import logging
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import divot.eval.reconstruction as reconstruction
from divot.cli import main
from divot.data.loading import load_video_clips
from divot.data.shapes import generate_dataset
from divot.data.transforms import dense_frame_subset
from divot.data.video import probe_video
from divot.diffusion import Detokenizer, detokenizer_preset
from divot.eval.metrics import psnr
from divot.eval.reconstruction import evaluate_folder, reconstruct_video
from divot.tokenizer import VideoTokenizer

FAST = {"num_steps": 2, "sampler": "ddim", "eta": 0.0}
FAST_ARGS = ["--steps", "2", "--sampler", "ddim", "--eta", "0", "--device", "cpu"]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    tokenizer = VideoTokenizer.from_preset("tiny").eval()
    detokenizer = Detokenizer.from_preset("tiny").eval()
    detokenizer.set_unconditional_tokens(tokenizer)
    return SimpleNamespace(tokenizer=tokenizer, detokenizer=detokenizer,
                           tok_dir=str(tokenizer.save_pretrained(root / "tok")),
                           detok_dir=str(detokenizer.save_pretrained(root / "detok")))


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Two one-clip videos, a three-clip story, and bad.mp4 (text, not a video)."""
    root = tmp_path_factory.mktemp("data")
    videos = Path(generate_dataset(root, 2, seed=0, progress=False)["video_dir"])
    shutil.copy(next((root / "stories").glob("*.mp4")), videos / "story.mp4")
    (videos / "bad.mp4").write_text("not a video, just text")
    return videos


def _incompatible(change: str) -> Detokenizer:
    cfg = detokenizer_preset("tiny")
    if change == "token_dim":
        cfg.condition.input_dim = 48
    elif change == "num_tokens":
        cfg.num_tokens = 8
    else:
        cfg.frame_size = 64
    return Detokenizer(cfg)


class CountingReconstruct:
    """Wraps reconstruct_video and records which files it was called on."""

    def __init__(self):
        self.real, self.calls = reconstruct_video, []

    def __call__(self, tokenizer, detokenizer, path, **kwargs):
        self.calls.append(Path(path).name)
        return self.real(tokenizer, detokenizer, path, **kwargs)


def test_reconstruct_video_shapes_originals_and_seed(models, folder):
    story = folder / "story.mp4"
    original, recon = reconstruct_video(models.tokenizer, models.detokenizer, story, batch_size=2, **FAST)
    t = Detokenizer.from_preset("tiny").config.num_frames  # frames the tiny de-tokenizer renders per clip
    assert original.shape == recon.shape == (3, t, 3, 32, 32)
    assert torch.equal(original, load_video_clips(story, 32)[:, dense_frame_subset(t)])
    assert recon.min() >= -1 and recon.max() <= 1
    # with eta 0 a clip's result does not depend on the batching; another seed gives another sample
    _, recon_b3 = reconstruct_video(models.tokenizer, models.detokenizer, story, batch_size=3, **FAST)
    assert torch.allclose(recon, recon_b3, atol=1e-4)
    _, recon_seed1 = reconstruct_video(models.tokenizer, models.detokenizer, story, seed=1, max_clips=1, **FAST)
    assert recon_seed1.shape[0] == 1 and not torch.allclose(recon[:1], recon_seed1, atol=1e-3)


@pytest.mark.parametrize("num_frames,expected", [(8, [0, 2, 4, 6, 8, 10, 12, 14]),
                                                 (6, [0, 3, 6, 9, 12, 15])])
def test_fewer_rendered_frames_are_compared_with_evenly_spread_dense_frames(models, folder, num_frames, expected):
    cfg = detokenizer_preset("tiny")
    cfg.num_frames = cfg.unet.num_frames = num_frames
    detok = Detokenizer(cfg).eval()
    video = folder / "train_s0_000000.mp4"
    original, recon = reconstruct_video(models.tokenizer, detok, video, **FAST)
    assert original.shape == recon.shape == (1, num_frames, 3, 32, 32)
    assert torch.equal(original, load_video_clips(video, 32)[:, expected])


@pytest.mark.parametrize("change", ["token_dim", "num_tokens", "frame_size"])
def test_incompatible_models_name_both_shapes(models, folder, change):
    with pytest.raises(ValueError, match=r"tokens \(16, 32\) for 32 px.*expects tokens") as info:
        reconstruct_video(models.tokenizer, _incompatible(change), folder / "story.mp4", **FAST)
    expected = {"token_dim": "(16, 48)", "num_tokens": "(8, 32)", "frame_size": "64 px"}[change]
    assert expected in str(info.value)


def test_evaluate_folder_skips_counts_and_resumes(models, folder, tmp_path, caplog, monkeypatch):
    results_path = tmp_path / "results.jsonl"
    with caplog.at_level(logging.WARNING):
        first = evaluate_folder(models.tokenizer, models.detokenizer, folder, results_path=results_path,
                                progress=False, **FAST)
    assert (first["num_videos"], first["num_skipped"], first["num_resumed"]) == (3, 1, 0)
    assert list(first["skipped"]) == ["bad.mp4"] and "bad.mp4" in caplog.text
    names = [r["video"] for r in first["videos"]]
    assert names == ["story.mp4", "train_s0_000000.mp4", "train_s0_000001.mp4"]
    assert [r["num_clips"] for r in first["videos"]] == [3, 1, 1]
    assert len(results_path.read_text().splitlines()) == 3
    # the all-black baseline is the PSNR of black frames against the video
    original = load_video_clips(folder / "train_s0_000000.mp4", 32)[:, dense_frame_subset(models.detokenizer.config.num_frames)]
    expected_black = psnr(torch.full_like(original, -1.0), original).mean().item()
    assert first["videos"][1]["psnr_black"] == pytest.approx(expected_black, rel=1e-5)
    assert first["psnr"] == pytest.approx(sum(r["psnr"] for r in first["videos"]) / 3)
    assert 0 < first["ssim"] <= 1 and first["psnr_black"] > 0

    # a rerun recomputes nothing (bad.mp4 is tried again and skipped again)
    counter = CountingReconstruct()
    monkeypatch.setattr(reconstruction, "reconstruct_video", counter)
    again = evaluate_folder(models.tokenizer, models.detokenizer, folder, results_path=results_path,
                            progress=False, **FAST)
    assert counter.calls == ["bad.mp4"]
    assert again["num_resumed"] == 3 and again["videos"] == first["videos"]
    assert len(results_path.read_text().splitlines()) == 3

    # interrupted after the first video, killed in the middle of the second line: the rest is recomputed
    lines = results_path.read_text().splitlines()
    results_path.write_text(lines[0] + "\n" + lines[1][:40])
    counter.calls.clear()
    resumed = evaluate_folder(models.tokenizer, models.detokenizer, folder, results_path=results_path,
                              progress=False, **FAST)
    assert counter.calls == ["bad.mp4", "train_s0_000000.mp4", "train_s0_000001.mp4"]
    assert resumed["num_resumed"] == 1
    assert resumed["psnr"] == pytest.approx(first["psnr"], abs=1e-3)
    assert [json.loads(line)["video"] for line in results_path.read_text().splitlines()] == names


def test_resume_with_other_settings_is_refused(models, folder, tmp_path):
    results_path = tmp_path / "results.jsonl"
    other = {"num_steps": 50, "sampler": "reference", "guidance_scale": 7.5, "guidance_rescale": 0.7, "eta": 1.0,
             "seed": 0, "max_clips": 20, "batch_size": 4}
    results_path.write_text(json.dumps({"video": "story.mp4", "settings": other}) + "\n")
    with pytest.raises(ValueError, match="other settings"):
        evaluate_folder(models.tokenizer, models.detokenizer, folder, results_path=results_path, progress=False,
                        **FAST)


@pytest.mark.parametrize("suffix,side_by_side", [(".mp4", False), (".gif", True)])
def test_cli_single_video(models, folder, tmp_path, caplog, suffix, side_by_side):
    out = tmp_path / f"recon{suffix}"
    argv = ["reconstruct", str(folder / "story.mp4"), "--tokenizer", models.tok_dir, "--detokenizer",
            models.detok_dir, "--out", str(out), *FAST_ARGS] + (["--side-by-side"] if side_by_side else [])
    with caplog.at_level(logging.INFO):
        assert main(argv) == 0
    info = probe_video(out)
    t = Detokenizer.from_preset("tiny").config.num_frames
    assert info.num_frames == 3 * t  # 3 clips, one after another
    assert (info.width, info.height) == ((64 if side_by_side else 32), 32)
    assert "PSNR" in caplog.text and "SSIM" in caplog.text and "all-black" in caplog.text


def test_cli_folder_writes_metrics_report_gifs_and_resumes(models, folder, tmp_path, monkeypatch):
    out = tmp_path / "eval"
    argv = ["reconstruct", str(folder), "--tokenizer", models.tok_dir, "--detokenizer", models.detok_dir,
            "--out", str(out), *FAST_ARGS]
    assert main(argv) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert (metrics["num_videos"], metrics["num_skipped"]) == (3, 1)
    assert {"psnr", "ssim", "psnr_black"} <= set(metrics) and len(metrics["videos"]) == 3
    report = (out / "report.md").read_text()
    assert "| video | clips | PSNR (dB) | all-black PSNR (dB) | SSIM |" in report
    assert report.count("![") == 3 and "bad.mp4" in report and "**mean**" in report
    gifs = sorted((out / "side_by_side").iterdir())
    assert [g.name for g in gifs] == ["story.mp4.gif", "train_s0_000000.mp4.gif", "train_s0_000001.mp4.gif"]
    info = probe_video(gifs[0])
    t = Detokenizer.from_preset("tiny").config.num_frames
    assert (info.num_frames, info.width, info.height) == (t, 64, 32)  # first clip, original | reconstruction
    assert len((out / "results.jsonl").read_text().splitlines()) == 3

    counter = CountingReconstruct()
    monkeypatch.setattr(reconstruction, "reconstruct_video", counter)
    assert main(argv) == 0
    assert counter.calls == ["bad.mp4"]
    again = json.loads((out / "metrics.json").read_text())
    assert again["num_resumed"] == 3 and again["psnr"] == metrics["psnr"]
    assert len((out / "results.jsonl").read_text().splitlines()) == 3


def test_cli_incompatible_models_are_a_one_line_error(models, folder, tmp_path, capsys):
    detok_dir = _incompatible("token_dim").save_pretrained(tmp_path / "detok48")
    code = main(["reconstruct", str(folder / "story.mp4"), "--tokenizer", models.tok_dir, "--detokenizer",
                 str(detok_dir), "--out", str(tmp_path / "r.mp4"), *FAST_ARGS])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2 and err.startswith("divot reconstruct: error:")
    assert "(16, 32)" in err and "(16, 48)" in err


@pytest.mark.parametrize("extra,message", [(["--out", "r.png"], "must end in .mp4 or .gif"),
                                           (["--out", "r.mp4", "--sampler", "magic"], "unknown sampler")])
def test_cli_bad_arguments_are_named(folder, tmp_path, capsys, extra, message):
    code = main(["reconstruct", str(folder / "story.mp4"), "--tokenizer", "tiny", "--detokenizer", "tiny", *extra])
    assert code == 2 and message in capsys.readouterr().err
