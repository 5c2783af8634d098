"""The ``divot`` command line: help everywhere, one-line errors, and the commands built so far."""

import json

import numpy as np
import pytest
from safetensors.torch import load_file

from divot.cli import COMMANDS, main
from divot.data.shapes import ClipSpec, ObjectSpec, render_clip
from divot.data.shapes.world import parse_caption
from divot.data.writers import write_video


def _jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert "usage: divot" in capsys.readouterr().out


def test_tokenize_writes_tokens_for_every_clip(tmp_path):
    spec = ClipSpec((ObjectSpec("circle", "red", "moves left"),))
    frames = [render_clip(spec, size=32, rng=None) for _ in range(3)]  # 48 frames at 8 fps: 3 clips
    video = write_video(np.concatenate(frames), tmp_path / "v.mp4")
    tok_dir = tmp_path / "tok"
    from divot.tokenizer import VideoTokenizer

    VideoTokenizer.from_preset("tiny").save_pretrained(tok_dir)
    out = tmp_path / "tokens.safetensors"
    assert main(["tokenize", str(video), "--tokenizer", str(tok_dir), "--out", str(out), "--device", "cpu"]) == 0
    tokens = load_file(str(out))["tokens"]
    assert tokens.shape == (3, 16, 32)


def test_tokenize_bad_video_is_a_one_line_error(tmp_path, capsys):
    bad = tmp_path / "notes.mp4"
    bad.write_text("not a video")
    code = main(["tokenize", str(bad), "--tokenizer", "tiny", "--out", str(tmp_path / "t.safetensors")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert "notes.mp4" in err[-1] and err[-1].startswith("divot tokenize: error:")


def test_tokenize_unknown_tokenizer_is_named(tmp_path, capsys):
    code = main(["tokenize", "x.mp4", "--tokenizer", str(tmp_path / "missing"), "--out", str(tmp_path / "t")])
    assert code == 2
    assert "missing" in capsys.readouterr().err


def test_convert_missing_checkpoint_is_named(tmp_path, capsys):
    code = main(["convert", "tokenizer", "--tokenizer-ckpt", str(tmp_path / "Divot_tokenizer.bin"),
                 "--out", str(tmp_path / "o")])
    assert code == 2
    assert "Divot_tokenizer.bin" in capsys.readouterr().err


def test_demo_small_run_writes_report(tmp_path, divot_model_dir):
    out = tmp_path / "demo"
    assert main(["demo", "--model", str(divot_model_dir), "--out", str(out), "--num-clips", "3",
                 "--num-prompts", "2", "--num-stories", "2", "--steps", "2", "--caption-rerank", "3"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["splits"]) == {"new", "held_out"}
    for name, split in summary["splits"].items():
        assert len(split["captions"]["rows"]) == 3 and len(split["multiple_choice"]["rows"]) == 3
        assert split["captions"]["method"].startswith("noisy-channel rerank of 3")
        assert split["captions"]["method"].endswith("shape question weight 4")  # the default check
        assert all("greedy" in row for row in split["captions"]["rows"])
        # Caption accuracies recomputed from the captions and the clips' true attributes (metadata.jsonl).
        truth = {r["id"]: r["attributes"][0] for r in _jsonl(out / "clips" / name / "metadata.jsonl")}
        rows = split["captions"]["rows"]
        for field, key in (("accuracy", "caption"), ("accuracy_greedy", "greedy")):
            hits = [{k: parse_caption(r[key])[k] == truth[r["id"]][k] for k in ("colour", "shape", "motion")}
                    for r in rows]
            want = {k: sum(h[k] for h in hits) / 3 for k in ("colour", "shape", "motion")}
            want["all"] = sum(all(h.values()) for h in hits) / 3
            assert split["captions"][field] == want, (name, field)
        for k, (low, high) in split["captions"]["ci95"].items():
            assert low <= split["captions"]["accuracy"][k] <= high
        # Multiple choice: correct / scored from the predictions file and the answers (none missing here).
        answers = json.loads((out / "clips" / name / "egoschema" / "subset_answers.json").read_text())
        preds = _jsonl(out / "questions" / name / "predictions.jsonl")
        assert len(preds) == len(answers) == 3 and all(p["status"] == "answered" for p in preds)
        correct = sum(p["pred"] == answers[p["id"]] for p in preds)
        mc = split["multiple_choice"]
        assert mc["accuracy"] == correct / 3 == sum(r["correct"] for r in mc["rows"]) / 3
        assert mc["counts"] == {"total": 3, "answered": 3, "scored": 3, "missing_videos": 0, "unparseable": 0}
        assert json.loads((out / "questions" / name / "summary.json").read_text())["accuracy"] == mc["accuracy"]
    assert len(summary["generation"]["rows"]) == 2
    html = (out / "report.html").read_text()
    assert "caption colour" in html and html.count("<video") == 6 and "greedy captions" in html
    assert "95% bootstrap interval" in html
    assert html.count("<img") == 2 + 2 * 3  # generated clips, then 2 stories of 3 clips
    for row in summary["generation"]["rows"]:
        assert (out / "generated" / row["gif"]).stat().st_size > 0
    stories = summary["stories"]
    assert len(stories["rows"]) == 2 and set(stories["by_pairs"]) == {"train", "held_out"}
    assert "Stories" in html and all((out / "stories" / g).is_file() for r in stories["rows"] for g in r["gifs"])
