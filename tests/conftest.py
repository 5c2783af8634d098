import os
from pathlib import Path

import pytest
import torch

# The project's machines have 2 cores: keep torch to them so parallel libraries don't oversubscribe.
torch.set_num_threads(min(2, os.cpu_count() or 2))
torch.set_num_interop_threads(1)

GOLDEN_DIR = Path(os.environ.get("DIVOT_GOLDEN_DIR", Path(__file__).parent / "fixtures" / "golden"))


@pytest.fixture(scope="session")
def golden_dir() -> Path:
    if not GOLDEN_DIR.is_dir():
        pytest.skip(f"golden folder {GOLDEN_DIR} not found (set DIVOT_GOLDEN_DIR)")
    return GOLDEN_DIR


@pytest.fixture(scope="session")
def divot_model_dir(tmp_path_factory) -> Path:
    """A complete tiny Divot model (random weights) saved as tokenizer/ llm/ detokenizer/ (divot.chat)."""
    from divot.chat import Divot
    from divot.diffusion import Detokenizer
    from divot.llm import DivotLLM
    from divot.tokenizer import VideoTokenizer

    torch.manual_seed(0)
    tokenizer = VideoTokenizer.from_preset("tiny").eval()
    detokenizer = Detokenizer.from_preset("tiny")
    detokenizer.set_unconditional_tokens(tokenizer)
    model = Divot.from_components(tokenizer, DivotLLM.from_preset("tiny"), detokenizer)
    return model.save_pretrained(tmp_path_factory.mktemp("divot_model") / "model")


@pytest.fixture(scope="session")
def shapes_video(tmp_path_factory) -> Path:
    """A 2-second shapes-world clip (16 frames, 32 px, 8 fps) written as mp4."""
    from divot.data.shapes import ClipSpec, ObjectSpec, render_clip
    from divot.data.writers import write_video

    frames = render_clip(ClipSpec((ObjectSpec("circle", "red", "moves left"),)), size=32, rng=None)
    return write_video(frames, tmp_path_factory.mktemp("videos") / "red_circle.mp4")
