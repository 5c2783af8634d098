"""train/shapes_model.py: which runs its second phases continue, and when they are skipped."""

import pytest
import torch

from train import shapes_model


class _Log(shapes_model.StageLog):
    """Records the stages it is asked to run instead of running them."""

    def __init__(self, path):
        super().__init__(path)
        self.calls = []

    def run(self, name, fn, argv, steps=None):
        self.calls.append((name, argv))


def _calls(tmp_path):
    log = _Log(tmp_path / "stages.json")
    return log, log.calls


def test_a_second_phase_at_zero_steps_is_skipped_and_hands_on_the_first_run(tmp_path):
    log, calls = _calls(tmp_path)
    first = tmp_path / "t2"
    got = shapes_model._second_phase(log, "T2 more", "t2_shapes_tiny_more.yaml", tmp_path / "t2_more", tmp_path / "t1",
                                     first, 0, ["seed=0"])
    assert got == first and calls == []


def test_a_second_phase_continues_the_given_exports_once(tmp_path):
    log, calls = _calls(tmp_path)
    run, t1, t2 = tmp_path / "t2_more", tmp_path / "t1_colours", tmp_path / "t2"
    args = (log, "T2 more", "t2_shapes_tiny_more.yaml", run, t1, t2, 1500, ["seed=3"])
    assert shapes_model._second_phase(*args) == run
    (name, argv), = calls
    assert name == "T2 more" and argv[1].endswith("configs/tokenizer/t2_shapes_tiny_more.yaml")
    assert {"seed=3", f"output_dir={run}", f"tokenizer={t1 / 'tokenizer'}", f"detokenizer={t2 / 'detokenizer'}",
            "optim.max_steps=1500"} <= set(argv)
    (run / "tokenizer").mkdir(parents=True)
    (run / "tokenizer" / "config.json").write_text("{}")  # interrupted before the de-tokenizer export
    assert shapes_model._second_phase(*args) == run and len(calls) == 2
    (run / "detokenizer").mkdir(parents=True)
    (run / "detokenizer" / "config.json").write_text("{}")
    assert shapes_model._second_phase(*args) == run and len(calls) == 2  # finished: not run again


def test_the_stage_log_times_each_stage_and_keeps_earlier_runs(tmp_path):
    log = shapes_model.StageLog(tmp_path / "stages.json")
    log.run("T1", lambda argv: 0, ["--config", str(shapes_model.CONFIGS / "tokenizer" / "t1_shapes_tiny.yaml"),
                                   "seed=0", "optim.max_steps=5"], steps=5)
    log.time("data train", lambda: None, clips=10, seed=0)
    again = shapes_model.StageLog(tmp_path / "stages.json")  # a resumed build reads what was recorded
    assert again.stages["T1"]["config"] == "configs/tokenizer/t1_shapes_tiny.yaml"
    assert again.stages["T1"]["overrides"] == ["seed=0", "optim.max_steps=5"]
    assert again.stages["T1"]["steps"] == 5 and again.stages["T1"]["runs"] == 1
    assert again.stages["data train"] == {"minutes": again.stages["data train"]["minutes"], "runs": 1,
                                          "clips": 10, "seed": 0}
    with pytest.raises(RuntimeError, match="stage T1 failed"):
        again.run("T1", lambda argv: 3, ["seed=0"], steps=5)
    assert shapes_model.StageLog(tmp_path / "stages.json").stages["T1"]["runs"] == 2


def test_the_record_names_the_commit_and_the_machine():
    git, machine = shapes_model._git_commit(), shapes_model._machine()
    assert git["commit"] is None or len(git["commit"]) == 40
    assert machine["cpu_count"] >= 1 and machine["torch"] and machine["python"]


def test_the_assembled_model_carries_the_demo_generation_settings(tmp_path, monkeypatch):
    """The assemble stage (every training stage already finished) writes generation.json: what the demo renders
    with, so ``divot generate`` on the built model uses the same settings."""
    from divot.chat.generation_defaults import SHAPES_DEMO, GenerationDefaults

    work, out = tmp_path / "work", tmp_path / "model"
    for folder in ("data/train", "data/held_out", "data/stories_train", "data/stories_held_out"):
        (work / folder).mkdir(parents=True)
        (work / folder / "summary.json").write_text("{}")
    for part in ("t1/tokenizer", "t1/detokenizer", "t2/detokenizer", "llm/model", "story/model"):
        (work / part).mkdir(parents=True)
        (work / part / "config.json").write_text("{}")
    monkeypatch.setattr(shapes_model, "build_token_cache", lambda *args, **kwargs: None)
    monkeypatch.setattr(shapes_model.VideoTokenizer, "from_pretrained", lambda path: torch.nn.Identity())
    shapes_model.build(out, work, quick=True)
    assert sorted(p.name for p in out.iterdir()) == ["detokenizer", "generation.json", "llm", "story_llm",
                                                     "tokenizer", "training.json"]
    assert GenerationDefaults.load(out / "generation.json") == SHAPES_DEMO
