"""``Divot.tell_story(stream=True)``: each segment's text as soon as it is written, then its clip; the same story
as the batched call (texts and clip tokens), its clips rendered one at a time."""

import pytest
import torch

from divot import Divot, Video
from divot.llm.sequences import SequenceBuilder
from divot.llm.story import generate_story, story_segments

INSTRUCTION = "Generate a story about a red circle."


@pytest.fixture(scope="module")
def model(divot_model_dir):
    return Divot.from_pretrained(divot_model_dir)


def test_streamed_story_alternates_text_and_clip_and_matches_the_story(model):
    items = list(model.tell_story(INSTRUCTION, num_segments=2, seed=5, num_steps=1, max_new_tokens=6, stream=True))
    story = model.tell_story(INSTRUCTION, num_segments=2, seed=5, num_steps=1, max_new_tokens=6)
    assert [type(item) for item in items] == [str, Video, str, Video]
    assert items[0::2] == story.texts  # sampled (not greedy): the same draws in the same order
    for clip, batched in zip(items[1::2], story.videos, strict=True):
        assert clip.frames.shape == batched.frames.shape and clip.fps == batched.fps


def test_segments_are_yielded_before_the_next_is_written(model):
    llm = model.llm
    prompt = SequenceBuilder.from_config(llm.tokenizer, llm.config).story_prompt(INSTRUCTION)
    segments = story_segments(llm, prompt, 3, generator=torch.Generator().manual_seed(2), max_new_tokens=5)
    first = next(segments)  # one segment exists; the others are written on demand
    whole = generate_story(llm, prompt, 3, generator=torch.Generator().manual_seed(2), max_new_tokens=5)
    rest = list(segments)
    assert [first.text] + [s.text for s in rest] == whole.texts
    assert torch.equal(torch.stack([first.tokens] + [s.tokens for s in rest]), whole.tokens)
    assert [first.forced_video] + [s.forced_video for s in rest] == whole.forced_video
    assert torch.is_grad_enabled()  # the generator's no_grad does not leak into the caller between segments


def test_bad_arguments_fail_before_the_first_item(model):
    with pytest.raises(ValueError, match="instruction must be a non-empty string"):
        model.tell_story("  ", stream=True)
    with pytest.raises(ValueError, match="num_segments must be >= 1"):
        model.tell_story(INSTRUCTION, num_segments=0, stream=True)
