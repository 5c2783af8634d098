"""train/shapes_model.py: which runs its second phases continue, and when they are skipped."""

from train import shapes_model


def _calls(monkeypatch):
    calls = []
    monkeypatch.setattr(shapes_model, "_run", lambda name, fn, argv: calls.append((name, argv)))
    return calls


def test_a_second_phase_at_zero_steps_is_skipped_and_hands_on_the_first_run(monkeypatch, tmp_path):
    calls = _calls(monkeypatch)
    first = tmp_path / "t2"
    got = shapes_model._second_phase("T2 more", "t2_shapes_tiny_more.yaml", tmp_path / "t2_more", tmp_path / "t1",
                                     first, 0, ["seed=0"])
    assert got == first and calls == []


def test_a_second_phase_continues_the_given_exports_once(monkeypatch, tmp_path):
    calls = _calls(monkeypatch)
    run, t1, t2 = tmp_path / "t2_more", tmp_path / "t1_colours", tmp_path / "t2"
    args = ("T2 more", "t2_shapes_tiny_more.yaml", run, t1, t2, 1500, ["seed=3"])
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
