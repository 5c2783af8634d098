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
