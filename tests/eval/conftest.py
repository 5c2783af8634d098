"""Fixtures of the evaluation tests: the tiny random Divot, small generated videos named after benchmark ids,
the annotation fixtures (tests/fixtures/benchmarks) and the real annotation files (shared/benchmarks)."""

import os
from pathlib import Path

import pytest

from tests.conftest import shared_folder

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "benchmarks"
REAL = Path(os.environ.get("DIVOT_BENCHMARKS_DIR",
                           Path(__file__).resolve().parents[3] / "shared" / "benchmarks"))


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return FIXTURES


@pytest.fixture(scope="session")
def real_benchmarks() -> Path:
    """The real annotation files: skipped on a clean clone (the reason names the folder), a failure in CI."""
    return shared_folder(REAL, "egoschema/subset_answers.json",
                         "the real benchmark annotation files (../shared/benchmarks or DIVOT_BENCHMARKS_DIR)")


@pytest.fixture(scope="session")
def eval_model(divot_model_dir):
    from divot.chat import Divot

    return Divot.from_pretrained(divot_model_dir)


@pytest.fixture(scope="session")
def clip_frames():
    """One 2-second shapes clip (16 frames, 32 px): uint8 (t, h, w, 3)."""
    from divot.data.shapes import ClipSpec, ObjectSpec, render_clip

    return render_clip(ClipSpec((ObjectSpec("square", "blue", "moves up"),)), size=32, rng=None)


def write_videos(folder: Path, names, frames, ext: str = ".mp4") -> Path:
    """``folder/<name><ext>`` for every name: the same tiny clip, named after real benchmark ids."""
    from divot.data.writers import write_video

    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        write_video(frames, folder / f"{name}{ext}")
    return folder
