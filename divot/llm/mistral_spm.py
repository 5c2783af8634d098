"""Mistral-7B's real text tokenizer without a model hub: the sentencepiece model the ``mistral-common`` wheel ships.

``mistral_common/data/tokenizer.model.v1`` in the PyPI wheel is Mistral-7B(-Instruct-v0.1)'s ``tokenizer.model``
(32,000 pieces; with the 262 Divot tokens added it is the released vocabulary of 32,262). Tests pin the sequence
formats' token ids with it, and ``benchmarks/paper_rehearsal.py`` builds the paper-size tokenizer folder from it.

The file is taken from an installed ``mistral_common`` if there is one, else from the wheel, fetched once with
``pip download --no-deps`` into a cache folder (``DIVOT_CACHE``, default ``~/.cache/divot``); its SHA-256 is checked.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

logger = logging.getLogger(__name__)

MISTRAL_COMMON_VERSION = "1.13.1"
SPM_MEMBER = "mistral_common/data/tokenizer.model.v1"
SPM_SHA256 = "dadfd56d766715c61d2ef780a525ab43b8e6da4de6865bda3d95fdef5e134055"
BASE_VOCAB = 32000


def cache_dir() -> Path:
    return Path(os.environ.get("DIVOT_CACHE", Path.home() / ".cache" / "divot"))


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _installed() -> Path | None:
    try:
        import mistral_common
    except ImportError:
        return None
    path = Path(mistral_common.__file__).parent / "data" / "tokenizer.model.v1"
    return path if path.is_file() and _sha256(path) == SPM_SHA256 else None


def mistral_spm_path(download: bool = True) -> Path:
    """The path of Mistral-7B's ``tokenizer.model`` (checked by SHA-256). Raises ``FileNotFoundError`` saying what
    was tried when it is neither installed, cached nor downloadable."""
    found = _installed()
    if found is not None:
        return found
    target = cache_dir() / f"mistral_common-{MISTRAL_COMMON_VERSION}" / "tokenizer.model.v1"
    if target.is_file() and _sha256(target) == SPM_SHA256:
        return target
    if not download:
        raise FileNotFoundError(f"Mistral's tokenizer.model is not installed (pip install mistral-common) nor "
                                f"cached at {target}")
    wheels = target.parent / "wheel"
    wheels.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--dest", str(wheels),
           f"mistral-common=={MISTRAL_COMMON_VERSION}"]
    logger.info("fetching the mistral-common %s wheel for Mistral's tokenizer.model", MISTRAL_COMMON_VERSION)
    done = subprocess.run(cmd, capture_output=True, text=True)
    wheel = next(iter(sorted(wheels.glob("mistral_common-*.whl"))), None)
    if done.returncode != 0 or wheel is None:
        raise FileNotFoundError(f"could not fetch mistral-common=={MISTRAL_COMMON_VERSION} from PyPI for Mistral's "
                                f"tokenizer.model ({' '.join(cmd)}): {done.stderr.strip()[-500:]}")
    with zipfile.ZipFile(wheel) as zf:
        data = zf.read(SPM_MEMBER)
    if hashlib.sha256(data).hexdigest() != SPM_SHA256:
        raise ValueError(f"{wheel}:{SPM_MEMBER} has an unexpected SHA-256; expected {SPM_SHA256}")
    tmp = target.with_suffix(".tmp")
    tmp.write_bytes(data)
    tmp.replace(target)
    shutil.rmtree(wheels, ignore_errors=True)
    return target


def build_mistral_tokenizer(out_dir: str | Path, legacy: bool = True, add_divot_tokens: bool = True):
    """Write a Hugging Face tokenizer folder for Mistral-7B-Instruct-v0.1 (``tokenizer.model`` +
    ``tokenizer_config.json``; sentencepiece ``legacy`` mode as given) and return the loaded tokenizer, with the
    Divot tokens added (32,262 ids) unless ``add_divot_tokens`` is False."""
    from transformers import AutoTokenizer

    from divot.llm.tokens import add_special_tokens, save_text_tokenizer

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(mistral_spm_path(), out_dir / "tokenizer.model")
    config = {"tokenizer_class": "LlamaTokenizer", "legacy": legacy, "add_bos_token": True, "add_eos_token": False,
              "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "model_max_length": 32768}
    (out_dir / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
    tokenizer = AutoTokenizer.from_pretrained(str(out_dir))
    if len(tokenizer) != BASE_VOCAB:
        raise ValueError(f"{out_dir}: expected Mistral's {BASE_VOCAB} pieces, got {len(tokenizer)}")
    if add_divot_tokens:
        add_special_tokens(tokenizer)
        save_text_tokenizer(tokenizer, out_dir)
    return tokenizer
