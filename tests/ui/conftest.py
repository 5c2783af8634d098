"""Fixtures of the web UI tests."""

import shutil

import pytest

from divot import Divot


@pytest.fixture(scope="module")
def text_only_model(divot_model_dir, tmp_path_factory):
    """The test model without its de-tokenizer: the Generate and Story tabs must say they cannot render."""
    root = tmp_path_factory.mktemp("text_only") / "model"
    for part in ("tokenizer", "llm"):
        shutil.copytree(divot_model_dir / part, root / part)
    return Divot.from_pretrained(root)
