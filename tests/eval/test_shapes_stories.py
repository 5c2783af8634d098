"""Story checks of the shapes world: sentence structure and each clip against its own sentence."""

import numpy as np
import pytest

from divot.data.shapes.story import render_story, sample_story
from divot.eval.shapes_stories import instruction_subject, parse_story_texts, score_story, summarize


@pytest.mark.parametrize("texts, structured", [
    (["a red circle moves left.", "then it moves up.", "then it stays still."], True),
    (["a red circle moves left.", "then a blue square appears.", "then the red circle grows."], True),
    (["a red circle moves left.", "then a blue square appears.", "then the blue square grows."], False),  # wrong one
    (["a red circle moves left.", "then the red circle grows."], False),  # "the" before anything appeared
    (["a red circle moves left.", "then a blue square appears.", "then it moves up."], False),  # ambiguous "it"
    (["then it moves up."], False),
    (["a red circle moves left.", "a dog barks."], False),
    ([], False),
])
def test_structure(texts, structured):
    assert parse_story_texts(texts)["structured"] is structured


def test_real_stories_score_as_their_own_sentences():
    scores = []
    for i in range(12):
        story = sample_story(np.random.default_rng(i))
        frames = render_story(story, size=32)  # (3 * 16, 32, 32, 3)
        clips = [frames[k * 16:(k + 1) * 16] for k in range(3)]
        scores.append(score_story(story.instruction, story.sentences(), clips))
        assert scores[-1]["structured"] and scores[-1]["follows_instruction"]
    summary = summarize(scores)
    assert summary["clip_colour"] == 1.0 and summary["clip_motion"] >= 0.9
    assert instruction_subject("Generate a story about a red circle.") == ("red", "circle")
    assert instruction_subject("Tell me something.") is None


def test_generation_motion_is_split_into_directions_and_the_rest():
    from divot.eval.shapes_demo import generation_prompts, motion_by_kind

    prompts = generation_prompts(14, seed=0)  # every motion twice
    rows = [{"correct": {"motion": p["motion"].startswith("moves")}} for p in prompts]
    kinds = motion_by_kind(rows, prompts)
    assert kinds == {"direction": {"n": 8, "accuracy": 1.0}, "still or size": {"n": 6, "accuracy": 0.0}}
    assert motion_by_kind([], [])["direction"] == {"n": 0, "accuracy": None}


def test_caption_intervals_bracket_each_accuracy_and_narrow_with_more_clips():
    from divot.eval.shapes_demo import caption_intervals

    def rows(n):  # 90% right shapes, everything else right
        return [{"correct": {"colour": True, "shape": i % 10 != 0, "motion": True}} for i in range(n)]

    small, large = caption_intervals(rows(100)), caption_intervals(rows(1000))
    assert small["colour"] == [1.0, 1.0] and small["all"] == small["shape"]
    assert small["shape"][0] < 0.9 < small["shape"][1]
    assert large["shape"][1] - large["shape"][0] < small["shape"][1] - small["shape"][0]
    assert caption_intervals([])["shape"] == [None, None]
