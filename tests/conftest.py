import os
from pathlib import Path

import pytest
import torch

# The project's machines have 2 cores: keep torch to them so parallel libraries don't oversubscribe.
torch.set_num_threads(min(2, os.cpu_count() or 2))
torch.set_num_interop_threads(1)

GOLDEN_DIR = Path(os.environ.get("DIVOT_GOLDEN_DIR", Path(__file__).parent / "fixtures" / "golden"))
# Every file the golden tests read (what the reference code writes; /work/shared/golden/README.md).
GOLDEN_FILES = (
    "tokenizer_config.json", "tokenizer_official.safetensors", "open_clip_visual.safetensors",
    "tokenizer_io.safetensors",
    "agent_config.json", "agent_official.safetensors", "agent_io.safetensors",
    "detokenizer_config.json", "detokenizer_official.safetensors", "detokenizer_io.safetensors",
    "sampler_io.safetensors",
    "vae_config.json", "vae_official.safetensors", "vae_io.safetensors",
)


def golden_dir_problem(folder: Path) -> str | None:
    """Why ``folder`` is not a complete golden set (a message naming it), or None if it is."""
    if not folder.is_dir():
        return f"golden folder {folder} does not exist (check DIVOT_GOLDEN_DIR)"
    missing = [name for name in GOLDEN_FILES if not (folder / name).is_file()]
    if missing:
        return f"golden folder {folder} lacks {', '.join(missing)} (check DIVOT_GOLDEN_DIR)"
    return None


@pytest.fixture(scope="session")
def golden_dir() -> Path:
    """The golden set. The default folder is in the repository, so a missing one means a mistyped
    DIVOT_GOLDEN_DIR: fail, never skip, or every equivalence test would silently vanish."""
    problem = golden_dir_problem(GOLDEN_DIR)
    if problem:
        pytest.fail(problem, pytrace=False)
    return GOLDEN_DIR


def in_ci() -> bool:
    """True when the CI variable is set (GitHub Actions, GitLab and most runners set CI=true)."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def shared_folder(folder: Path, marker: str, what: str) -> Path:
    """``folder`` if ``folder / marker`` exists; otherwise skip saying which folder was looked for, or, in CI
    (where ``../shared`` is checked out beside the repository), fail: a test that needs it must run there."""
    if (folder / marker).is_file():
        return folder
    reason = f"{what} not found: {folder / marker} does not exist"
    if in_ci():
        pytest.fail(f"{reason}; CI is set, so this folder must be present", pytrace=False)
    pytest.skip(f"{reason} (set CI=true to make this a failure)")


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


def require_mistral_spm() -> None:
    """Mistral's ``tokenizer.model`` (``divot.llm.mistral_spm``), fetched if need be; without network and without
    the wheel cached: skip, or fail in CI."""
    from divot.llm.mistral_spm import mistral_spm_path

    try:
        mistral_spm_path()
    except (FileNotFoundError, ValueError) as err:
        if in_ci():
            pytest.fail(f"Mistral's tokenizer is needed in CI: {err}", pytrace=False)
        pytest.skip(f"Mistral's tokenizer is unavailable: {err}")


@pytest.fixture(scope="session")
def mistral_tokenizer_factory(tmp_path_factory):
    """``make(legacy) -> tokenizer``: Mistral-7B's real sentencepiece tokenizer (from the ``mistral-common`` wheel,
    ``divot.llm.mistral_spm``) with the 262 Divot tokens, in sentencepiece ``legacy`` mode or not; built once per
    mode. Without network and without the wheel cached: skip, or fail in CI."""
    from divot.llm.mistral_spm import build_mistral_tokenizer

    require_mistral_spm()
    built = {}

    def make(legacy: bool):
        if legacy not in built:
            built[legacy] = tmp_path_factory.mktemp(f"mistral_legacy_{legacy}")
            build_mistral_tokenizer(built[legacy], legacy=legacy)
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(str(built[legacy]))

    return make
