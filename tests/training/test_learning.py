"""Proof that stage T1 learns on the shapes world in CPU minutes (tiny presets), then T2 (DESIGN section 9).

What is asserted is what a few minutes reliably give on 2 CPU cores (numbers from the development runs in the
comments); longer runs (the bundled model) go further and are reported in benchmarks/RESULTS.md.
"""

import json
from pathlib import Path

import pytest

from divot.data.shapes.generate import generate_dataset
from train.tokenizer import main

ROOT = Path(__file__).resolve().parents[2]


def _jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.slow
def test_t1_then_t2_learn_on_the_shapes_world(tmp_path):
    generate_dataset(tmp_path / "train", num=400, seed=0, num_stories=0, progress=False)
    generate_dataset(tmp_path / "held_out", num=48, seed=1, held_out=True, num_stories=0, progress=False)
    data = [f"data.train={tmp_path / 'train' / 'metadata.jsonl'}",
            f"data.val={tmp_path / 'held_out' / 'metadata.jsonl'}"]
    t1 = tmp_path / "t1"
    assert main(["--config", str(ROOT / "configs/tokenizer/t1_shapes_tiny.yaml"), *data, f"output_dir={t1}",
                 "optim.max_steps=250", "eval.every=0", "checkpoint_every=0", "eval.num_val=32",
                 "eval.num_samples=16", "eval.num_probe_train=256"]) == 0
    losses = [m["loss"] for m in _jsonl(t1 / "metrics.jsonl")]
    final = _jsonl(t1 / "eval.jsonl")[-1]
    # The denoising loss falls clearly (x_0 loss; development runs: 0.83 -> 0.15 in 200 steps).
    assert sum(losses[-3:]) / 3 < 0.5 * sum(losses[:2]) / 2, losses
    # The tokens carry content the denoiser uses: own tokens beat an empty clip's clearly (full-size runs:
    # gap 27% after 200 steps, 50% after 500).
    assert final["loss_own"] < final["loss_empty"] and final["gap"] > 0.05, final
    # ... and the renders show it: the colour of held-out clips is drawn from their own tokens, not from an
    # empty clip's (full-size runs, 8 clips: 0.38-0.50 against 0.0-0.12).
    assert final["recon_own"]["colour"] > final["recon_empty"]["colour"], final
    # Colour, shape and motion are linearly readable from the tokens (runs: colour 1.0; motion 0.66 held-out /
    # 0.63 in distribution vs chance 0.13-0.2, 0.25-0.38 before the position tables were initialised at unit
    # scale and the layout terms were added; shape 0.84 in distribution and 0.47 on held-out colour-shape
    # pairs vs chance 0.22-0.25, 0.00-0.06 held-out before the silhouette term was added). The shipped config
    # (silhouette weight 1.0) at these 250 steps, 2026-12-03: colour 1.00 held-out / 1.00 in distribution, shape
    # 0.84 in distribution, motion 0.66 / 0.66; shape on held-out pairs 0.25 = chance: after 250 steps the shape
    # of an unseen colour-shape pair is not yet readable, so it is not asserted here. The bundle's longer build
    # reads it (0.91 at the end of its colour phase, training.json) and tests/test_bundled_model.py checks the
    # captions of held-out pairs.
    probe, probe_in = final["probe"], final["probe_in_dist"]
    assert probe["colour"]["accuracy"] >= probe["colour"]["chance"] + 0.4, probe
    assert probe_in["colour"]["accuracy"] >= 0.9, probe_in
    assert probe_in["shape"]["accuracy"] >= probe_in["shape"]["chance"] + 0.4, probe_in
    assert probe["motion"]["accuracy"] >= probe["motion"]["chance"] + 0.25, probe
    assert probe_in["motion"]["accuracy"] >= probe_in["motion"]["chance"] + 0.2, probe_in
    # The layout terms fall (the context grid's coarse frames: 4 x 4; the silhouettes: 12 x 12).
    metrics = _jsonl(t1 / "metrics.jsonl")
    grid, shape = [m["grid_loss"] for m in metrics], [m["shape_loss"] for m in metrics]
    assert grid[-1] < 0.7 * grid[0], grid
    assert shape[-1] < 0.7 * shape[0], shape

    t2 = tmp_path / "t2"
    assert main(["--config", str(ROOT / "configs/tokenizer/t2_shapes_tiny.yaml"), *data, f"output_dir={t2}",
                 f"tokenizer={t1 / 'tokenizer'}", f"detokenizer={t1 / 'detokenizer'}", "optim.max_steps=60",
                 "eval.every=0", "checkpoint_every=0", "eval.num_val=32", "eval.num_samples=8", "eval.probe=false",
                 "eval.guidance_scale=3.0"]) == 0
    after = _jsonl(t2 / "eval.jsonl")[-1]
    # T2 keeps the conditioning (own tokens still beat the empty context) and learns the unconditional branch.
    assert after["loss_own"] < after["loss_empty"], after
    assert after["loss_empty"] < final["loss_empty"], (final, after)
