"""Streamed answers (``divot.chat.streaming``): the pieces join to exactly the non-streamed text."""

import pytest

from divot import Divot
from divot.chat.streaming import TextPieces

FAST = {"max_new_tokens": 12}


@pytest.fixture(scope="module")
def model(divot_model_dir):
    return Divot.from_pretrained(divot_model_dir)


@pytest.mark.parametrize("options", [{"seed": 0}, {"seed": 7, "temperature": 1.5, "top_p": 0.95},
                                     {"greedy": True}])
def test_streamed_answer_equals_the_answer(model, shapes_video, options):
    pieces = list(model.ask(shapes_video, "What colour is the object?", stream=True, **FAST, **options))
    assert all(isinstance(p, str) and p for p in pieces)
    assert "".join(pieces) == model.ask(shapes_video, "What colour is the object?", **FAST, **options)


def test_streamed_chat_keeps_the_turn_once_finished(model, shapes_video):
    streamed, plain = model.chat(shapes_video, seed=3, **FAST), model.chat(shapes_video, seed=3, **FAST)
    first = "".join(streamed.ask("What colour is it?", stream=True))
    assert first == plain.ask("What colour is it?")
    assert streamed.history == plain.history
    follow_up = streamed.ask("And its shape?", stream=True)
    assert len(streamed) == 1  # nothing recorded before the answer is read
    assert "".join(follow_up) == plain.ask("And its shape?")
    assert streamed.history == plain.history


def test_a_stream_closed_early_stops_and_records_nothing(model, shapes_video):
    chat = model.chat(shapes_video, seed=1, max_new_tokens=64, temperature=2.0, top_p=1.0)
    stream = chat.ask("Describe it.", stream=True)
    next(stream, None)
    stream.close()  # stops the worker thread at the next token
    assert chat.history == []


def test_stream_rejects_lists_and_bad_options(model, shapes_video):
    with pytest.raises(ValueError, match="one video and one question"):
        model.ask([shapes_video, shapes_video], "What colour?", stream=True)
    with pytest.raises(ValueError, match="unknown decoding option"):
        model.ask(shapes_video, "What colour?", stream=True, temprature=0.5)
    with pytest.raises(ValueError, match="non-empty question"):
        model.ask(shapes_video, " ", stream=True)


TEXTS = ["A red circle moves left.", "  naïve café — 東京タワー 🙂!  ", "x ,  y . z\n\nnew paragraph", "123 4.5e-3 ())",
         "émoji 👩\u200d💻 end"]


@pytest.mark.parametrize("legacy", [True, False])
def test_pieces_of_the_real_mistral_tokenizer_join_to_the_decoded_text(mistral_tokenizer_factory, legacy):
    tokenizer = mistral_tokenizer_factory(legacy)
    for text in TEXTS:
        ids = tokenizer(text, add_special_tokens=False).input_ids + [tokenizer.eos_token_id]
        pieces = TextPieces(tokenizer)
        out = [pieces.push([i]) for i in ids] + [pieces.finish()]
        assert "".join(out) == tokenizer.decode(ids, skip_special_tokens=True).strip()
        assert not any("\ufffd" in p for p in out)  # byte tokens are held back until their character is whole


def test_closing_a_stream_stops_the_decoding(model, shapes_video):
    prompt = model.chat(shapes_video).prompt("Describe it.")
    options = {"seed": 5, "temperature": 3.0, "top_p": 1.0, "max_new_tokens": 256}
    whole = model.generate_text(prompt, stream=True, **options)
    text = "".join(whole)
    assert text == model.generate_text(prompt, **options)
    stream = model.generate_text(prompt, stream=True, **options)
    first = next(stream)
    stream.close()
    assert text.startswith(first)
    assert 0 < len(stream.ids) < len(whole.ids), (len(stream.ids), len(whole.ids))
