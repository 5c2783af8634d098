"""The ``divot ui`` page built without serving it: every documented ``elem_id`` is on the page, a model without
a de-tokenizer turns the Generate and Story tabs off, and unexpected errors become a named message."""

import logging

import pytest

gr = pytest.importorskip("gradio", reason="the ui extra is not installed (pip install 'divot[ui]')")
from divot.ui.app import ELEM_IDS, _message, build_app  # noqa: E402
from divot.ui.handlers import NO_DETOKENIZER, UIError  # noqa: E402


def test_every_documented_elem_id_is_on_the_page_and_rendering_is_off_without_detokenizer(text_only_model,
                                                                                          tmp_path):
    app = build_app(text_only_model, tmp_path, model_name="text-only")
    blocks = {block.elem_id: block for block in app.blocks.values() if getattr(block, "elem_id", None)}
    assert set(ELEM_IDS) <= set(blocks), sorted(set(ELEM_IDS) - set(blocks))
    assert blocks["gen-notice"].value == NO_DETOKENIZER and blocks["story-notice"].value == NO_DETOKENIZER
    for name in ("gen-run", "gen-prompt", "story-run", "story-instruction"):
        assert blocks[name].interactive is False, name
    assert blocks["chat-ask"].interactive is not False  # chat works without a de-tokenizer
    assert sorted(p.name for p in (tmp_path / "examples").iterdir()) == ["blue_square.mp4", "green_triangle.mp4",
                                                                         "red_circle.mp4"]


def test_unexpected_errors_become_a_named_message_and_a_log_record(caplog):
    assert _message(UIError("Type a prompt first.")) == "Type a prompt first."
    with caplog.at_level(logging.ERROR, logger="divot.ui.app"):
        message = _message(RuntimeError("CUDA out of memory"))
    assert message.startswith("Something went wrong (RuntimeError: CUDA out of memory)")
    assert "Traceback" not in message and caplog.records[-1].exc_info is not None
