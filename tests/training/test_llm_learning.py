"""The tiny Divot-LLM really learns on the shapes world (a few CPU minutes).

Clip tokens come from the tiny tokenizer with random weights: its features carry colour and shape (DESIGN
section 9), not much motion. Held-out clips are new clips of the training (colour, shape) pairs; on the
held-out pairs themselves a model this small names the colour but predicts a shape seen with that colour.
"""

import json

import pytest

from tests.training.llm_world import CONFIGS, make_world, sources_yaml, world_overrides
from train.llm import main


@pytest.mark.slow
def test_tiny_llm_captions_held_out_clips_and_its_gmm_nll_falls(tmp_path):
    world = make_world(tmp_path / "world", num_train=600, num_held=100, held_out_combos=False)
    out = tmp_path / "run"
    args = ["--config", str(CONFIGS / "pretrain_shapes_tiny.yaml"), f"output_dir={out}",
            sources_yaml(world, {"caption": 1, "generation": 1}), *world_overrides(world), "optim.max_steps=1500",
            "eval.every=0", "eval.at_start=true", "eval.num_caption=100", "eval.num_gmm=100", "eval.num_mc=100",
            "checkpoint_every=0", "log_every=100"]
    assert main(args) == 0
    start, end = [json.loads(line) for line in (out / "eval.jsonl").read_text().splitlines()]
    assert start["step"] == 0 and end["step"] == 1500
    # Chance: colour 1/6, shape 1/5, five-way multiple choice 1/5.
    assert end["caption_colour_acc"] >= 0.8, end
    assert end["caption_shape_acc"] >= 0.5, end
    assert end["mc_acc"] >= 0.35, end
    assert end["gmm_nll"] < start["gmm_nll"] - 1.0, (start["gmm_nll"], end["gmm_nll"])
    assert end["caption_lm_loss"] < 0.5 * start["caption_lm_loss"]
