"""The web UI's handlers (``divot.ui.handlers``) without a browser: what each tab does with good and bad input.
A tiny random model: answers are gibberish, so the tests check streaming, history, files and messages."""

import html
import shutil

import pytest

from divot import Divot
from divot.data.video import probe_video
from divot.ui import handlers
from divot.ui.handlers import NO_DETOKENIZER, ChatState, UIError
from divot.ui.storyboard import board_html


@pytest.fixture(scope="module")
def model(divot_model_dir):
    return Divot.from_pretrained(divot_model_dir)


# -- chat ------------------------------------------------------------------------------------------------------------
def test_the_answer_streams_in_and_equals_the_api_answer(model, shapes_video):
    steps = list(handlers.chat_answer(model, None, str(shapes_video), "What colour is the object?", seed=3))
    expected = model.chat(shapes_video, seed=3).ask("What colour is the object?")
    partials = [messages[-1]["content"] for _, messages, _ in steps[:-1]]
    assert partials[0] == "" and partials[-1] == expected
    assert len(set(partials)) > 2  # the answer grew piece by piece
    assert all(expected.startswith(p) for p in partials)
    state, messages, status = steps[-1]
    assert messages == [{"role": "user", "content": "What colour is the object?"},
                        {"role": "assistant", "content": expected}]
    assert "red_circle.mp4" in status and "1 turn so far" in status


def test_follow_ups_keep_the_history_and_clear_forgets_it(model, shapes_video):
    state, _, _ = list(handlers.chat_answer(model, None, str(shapes_video), "What colour is it?"))[-1]
    state, messages, status = list(handlers.chat_answer(model, state, str(shapes_video), "And its shape?"))[-1]
    assert [m["content"] for m in messages[::2]] == ["What colour is it?", "And its shape?"]
    conversation = model.chat(shapes_video, seed=0)
    conversation.ask("What colour is it?")
    assert messages[-1]["content"] == conversation.ask("And its shape?")  # the first turn was in the prompt
    assert "2 turns" in status
    state, messages, status = handlers.chat_clear(state)
    assert messages == [] and "cleared" in status and state.video == str(shapes_video)


def test_a_new_video_starts_a_new_conversation(model, shapes_video, tmp_path):
    state, _, _ = list(handlers.chat_answer(model, None, str(shapes_video), "What colour is it?"))[-1]
    other = tmp_path / "copy.mp4"
    shutil.copy(shapes_video, other)
    state, messages, status = list(handlers.chat_answer(model, state, str(other), "What shape is it?"))[-1]
    assert len(messages) == 2 and "copy.mp4" in status


@pytest.mark.parametrize("content", [b"", b"not a video at all"], ids=["empty", "garbage"])
def test_a_bad_video_is_a_readable_error(model, tmp_path, content):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(content)
    with pytest.raises(UIError, match=r"^Could not read the video bad\.mp4: .*(empty|not a readable video)"):
        list(handlers.chat_answer(model, ChatState(), str(bad), "What colour is it?"))
    with pytest.raises(UIError, match="Could not read the video gone.mp4: .*does not exist"):
        list(handlers.chat_answer(model, ChatState(), str(tmp_path / "gone.mp4"), "What colour is it?"))


def test_missing_video_question_or_seed_are_named(model, shapes_video):
    with pytest.raises(UIError, match="Upload a video or pick an example"):
        list(handlers.chat_answer(model, None, None, "What colour is it?"))
    with pytest.raises(UIError, match="Type a question"):
        list(handlers.chat_answer(model, None, str(shapes_video), "   "))
    with pytest.raises(UIError, match="seed must be a whole number >= 0, got -1"):
        list(handlers.chat_answer(model, None, str(shapes_video), "Hi?", seed=-1))
    with pytest.raises(UIError, match="seed must be a whole number"):
        list(handlers.chat_answer(model, None, str(shapes_video), "Hi?", seed=None))


# -- generate --------------------------------------------------------------------------------------------------------
def test_generate_writes_a_playable_enlarged_mp4(model, tmp_path):
    path, status = handlers.generate_clip(model, "a red circle moves left", "ddim", 1, 2.0, seed=1, num_clips=1,
                                          out_dir=tmp_path)
    info = probe_video(path)
    expected = model.generate_video("a red circle moves left", seed=1, num_steps=1, sampler="ddim",
                                    guidance_scale=2.0)
    assert path.suffix == ".mp4" and info.num_frames == len(expected)
    factor = handlers.DISPLAY_SIDE // max(expected.size)
    assert (info.height, info.width) == (expected.size[0] * factor, expected.size[1] * factor)
    assert "sampler ddim, 1 steps, guidance 2.0, seed 1" in status


def test_an_empty_prompt_or_bad_settings_are_named(model, tmp_path):
    with pytest.raises(UIError, match="Type a prompt first"):
        handlers.generate_clip(model, "  ", "ddim", 2, 7.5, out_dir=tmp_path)
    with pytest.raises(UIError, match="Unknown sampler 'plms'"):
        handlers.generate_clip(model, "a red circle", "plms", 2, 7.5, out_dir=tmp_path)
    with pytest.raises(UIError, match="number of steps must be a whole number >= 1, got 0"):
        handlers.generate_clip(model, "a red circle", "ddim", 0, 7.5, out_dir=tmp_path)
    with pytest.raises(UIError, match="guidance scale must be a number >= 1"):
        handlers.generate_clip(model, "a red circle", "ddim", 2, 0.5, out_dir=tmp_path)
    assert not list(tmp_path.iterdir())  # nothing was written


def test_a_model_without_detokenizer_says_so(text_only_model, tmp_path):
    assert handlers.rendering_notice(text_only_model) == NO_DETOKENIZER
    with pytest.raises(UIError, match="has no de-tokenizer"):
        handlers.generate_clip(text_only_model, "a red circle", None, 2, 7.5, out_dir=tmp_path)
    with pytest.raises(UIError, match="has no de-tokenizer"):
        list(handlers.story_board(text_only_model, "Generate a story.", 2))


def test_a_full_model_has_no_notice(model):
    assert handlers.rendering_notice(model) is None


# -- story -----------------------------------------------------------------------------------------------------------
def test_the_storyboard_shows_each_text_then_its_clip(model):
    boards = list(handlers.story_board(model, "Generate a story about a red circle.", 2, seed=4, num_steps=1))
    story = model.tell_story("Generate a story about a red circle.", num_segments=2, seed=4, num_steps=1)
    # empty, text 1, clip 1, text 2, clip 2
    assert len(boards) == 5
    counts = [(board.count('class="divot-story-text"'), board.count('class="divot-story-clip"')) for board, _ in boards]
    assert counts == [(0, 0), (1, 0), (1, 1), (2, 1), (2, 2)]
    assert 'class="divot-story-pending"' in boards[1][0] and 'class="divot-story-pending"' not in boards[2][0]
    final, status = boards[-1]
    assert status.startswith("Done: 2 segments")
    for k, text in enumerate(story.texts, start=1):  # the streamed texts are the API's story
        assert f'id="story-segment-{k}"' in final
        assert f"<b>{k}.</b> {html.escape(text) if text else '<i>(no text)</i>'}</p>" in final
    assert final.count("data:image/gif;base64,") == 2


def test_a_story_needs_an_instruction(model):
    with pytest.raises(UIError, match="Type an instruction"):
        list(handlers.story_board(model, "", 2))
    with pytest.raises(UIError, match="number of segments must be a whole number >= 1"):
        list(handlers.story_board(model, "Generate a story.", 0))


def test_the_storyboard_escapes_text_and_checks_its_counts():
    board = board_html(["<b>bold</b> & more"], [])
    assert "&lt;b&gt;bold&lt;/b&gt; &amp; more" in board and "divot-story-pending" in board
    with pytest.raises(ValueError, match="2 texts, 0 clips"):
        board_html(["a", "b"], [])
