"""Models shipped inside the package (``divot/assets/<name>/``) and how a ``--model`` value is resolved.

A bundled model is a full Divot directory (``tokenizer/``, ``llm/``, ``detokenizer/``) packaged as package data
(``[tool.setuptools.package-data]`` in pyproject.toml). ``shapes-tiny`` is the shapes-world model (DESIGN
section 9); it is trained and committed separately, so a checkout may not have it yet. The shipped folder is the
unedited output of its build, made before builds wrote ``generation.json``: it has none, so it generates with the
library defaults (``divot.chat.generation_defaults.LIBRARY_DEFAULTS``); a rebuild adds the shapes settings.
"""

from __future__ import annotations

from pathlib import Path

ASSETS_DIR = Path(__file__).resolve().parent.parent / "assets"
BUNDLED_MODELS = ("shapes-tiny",)  # names this version of divot knows about
DEFAULT_MODEL = "shapes-tiny"


def available_bundled_models() -> list[str]:
    """Names of the bundled models present in this installation (a folder with ``tokenizer/`` and ``llm/``)."""
    if not ASSETS_DIR.is_dir():
        return []
    return sorted(p.name for p in ASSETS_DIR.iterdir()
                  if p.is_dir() and (p / "tokenizer").is_dir() and (p / "llm").is_dir())


def bundled_model_path(name: str) -> Path:
    """The directory of a bundled model, e.g. ``bundled_model_path("shapes-tiny")``.

    Raises ``FileNotFoundError`` naming the bundled models that are installed when ``name`` is not one of them.
    """
    available = available_bundled_models()
    if name in available:
        return ASSETS_DIR / name
    listed = ", ".join(available) if available else "none installed"
    if name in BUNDLED_MODELS:
        raise FileNotFoundError(f"the bundled model {name!r} is not installed in this copy of divot "
                                f"({ASSETS_DIR / name} is missing; available bundled models: {listed}); "
                                "pass a model directory instead")
    raise FileNotFoundError(f"unknown bundled model {name!r} (available bundled models: {listed})")


def resolve_model_path(path_or_name: str | Path) -> Path:
    """A model directory, or the directory of a bundled model name. Raises ``FileNotFoundError`` otherwise."""
    path = Path(path_or_name)
    if path.is_dir():
        return path
    if path.exists():
        raise FileNotFoundError(f"model {str(path_or_name)!r} is a file, not a model directory")
    name = str(path_or_name)
    looks_like_name = "/" not in name and "\\" not in name and not name.startswith(".")
    if looks_like_name:
        try:
            return bundled_model_path(name)
        except FileNotFoundError as err:
            if name in BUNDLED_MODELS:
                raise
            available = ", ".join(available_bundled_models()) or "none installed"
            raise FileNotFoundError(f"model {name!r} is neither a directory nor a bundled model name "
                                    f"(bundled: {available})") from err
    raise FileNotFoundError(f"model directory {path} does not exist")
