"""Generation defaults stored with a Divot model directory, as ``generation.json`` (like transformers'
``generation_config.json``): how ``Divot.generate_video``, ``render`` and ``tell_story`` sample when the caller
passes nothing.

    model-dir/
      generation.json      {"sampler": "reference", "num_steps": 50, "eta": 1.0, "guidance_scale": 7.5, ...}
      tokenizer/ llm/ detokenizer/

Named sets:

* ``PUBLISHED``: what the reference publishes for the released weights: the reference DDIM (``sampler="reference"``,
  50 steps, eta 1.0), classifier-free guidance 7.5 rescaled by 0.7, the instruction prompt with the first
  generation template, and text sampled until the model opens ``<vid>`` (the reference's inference loop).
  ``divot convert detokenizer`` writes it into the converted model directory.
* ``LIBRARY_DEFAULTS``: this library's defaults (DPM-Solver++, 20 steps, guidance 7.5, rescale 0.7, eta 1.0; the
  instruction prompt, ``<vid>`` forced). A directory without ``generation.json`` uses them (logged once at info
  level per directory). The bundled ``shapes-tiny`` is the unedited output of its build from before builds wrote
  ``generation.json``, so it has none and uses these.
* ``SHAPES_DEMO``: the shapes-world models (``train/shapes_model.py`` writes it into the model it builds): what
  ``divot demo`` renders with (guidance 3.0, otherwise the library defaults).

Loading is strict: an unknown key or a bad value is a ``ValueError`` naming the file and the key; keys left out
take the library defaults. This module imports neither torch nor the LLM, so a CLI's ``--help`` can quote it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

GENERATION_FILE = "generation.json"  # at the root of a Divot model directory
PROMPT_FORMATS = ("instruct", "pretrain")
OPEN_VIDEO = ("force", "sample")
# divot.llm.sequences.GENERATION_TEMPLATES[0], spelt out so that this module does not import the LLM
# (tests/test_generation_defaults.py keeps the two equal).
DEFAULT_TEMPLATE = "Generate a video of"
RENDER_KEYS = ("sampler", "num_steps", "guidance_scale", "guidance_rescale", "eta")  # Detokenizer.decode's
_reported: set[str] = set()  # directories already logged as lacking generation.json


@dataclass(frozen=True)
class GenerationDefaults:
    """How a Divot model generates video when the caller does not say.

    De-tokenizer sampling (``Detokenizer.decode``): ``sampler`` ("reference" = the published DDIM, or a diffusers
    scheduler: "dpmsolver++", "ddim", "euler", "unipc", "ddpm"), ``num_steps``, ``guidance_scale`` (1: no
    classifier-free guidance), ``guidance_rescale`` (0: off), ``eta`` (DDIM noise of the reference / ddim samplers).

    Video prompt (``Divot.generate_video``): ``prompt_format`` "instruct" (``<s>[INST] {template} caption
    [/INST]\\n``, the instruction-tuned weights) or "pretrain" (``<s> caption``, what ``Divot_pretrain`` was
    trained on); ``open_video`` "force" (``<vid>`` appended after the prompt) or "sample" (text is sampled until the
    model opens ``<vid>`` itself, as the reference does); ``template``: the instruction before the caption in the
    instruct format (None: the caption alone inside ``[INST] ... [/INST]``).
    """

    sampler: str = "dpmsolver++"
    num_steps: int = 20
    guidance_scale: float = 7.5
    guidance_rescale: float = 0.7
    eta: float = 1.0
    prompt_format: str = "instruct"
    open_video: str = "force"
    template: str | None = DEFAULT_TEMPLATE

    def __post_init__(self):
        from divot.diffusion.config import SAMPLERS

        if self.sampler not in SAMPLERS:
            raise ValueError(f"sampler: expected one of {list(SAMPLERS)}, got {self.sampler!r}")
        if not _is_int(self.num_steps) or self.num_steps < 1:
            raise ValueError(f"num_steps: expected an integer >= 1, got {self.num_steps!r}")
        for key in ("guidance_scale", "guidance_rescale", "eta"):
            if not _is_number(getattr(self, key)):
                raise ValueError(f"{key}: expected a finite number, got {getattr(self, key)!r}")
        if not 0 <= self.guidance_rescale <= 1:
            raise ValueError(f"guidance_rescale: expected a number in [0, 1], got {self.guidance_rescale!r}")
        if self.eta < 0:
            raise ValueError(f"eta: expected a number >= 0, got {self.eta!r}")
        if self.prompt_format not in PROMPT_FORMATS:
            raise ValueError(f"prompt_format: expected one of {list(PROMPT_FORMATS)}, got {self.prompt_format!r}")
        if self.open_video not in OPEN_VIDEO:
            raise ValueError(f"open_video: expected one of {list(OPEN_VIDEO)}, got {self.open_video!r}")
        if self.template is not None and not isinstance(self.template, str):
            raise ValueError(f"template: expected a string or null, got {self.template!r}")

    # -- overrides ------------------------------------------------------------------------------------------
    def replace(self, **changes) -> GenerationDefaults:
        """A copy with the given fields changed; a value of None keeps this one's (the call's "not given").
        Unknown names and bad values raise ``ValueError``."""
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise ValueError(f"unknown generation setting(s) {unknown}; expected some of {list(self.to_dict())}")
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def render_kwargs(self) -> dict:
        """The de-tokenizer's keyword arguments (``Detokenizer.decode``): sampler, num_steps, guidance_scale,
        guidance_rescale, eta."""
        return {k: getattr(self, k) for k in RENDER_KEYS}

    # -- files ------------------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict, where: str = "generation defaults") -> GenerationDefaults:
        """Strict: unknown keys and bad values raise ``ValueError`` naming ``where`` and the key; keys left out
        take the library defaults."""
        from divot.config import config_from_dict

        try:
            return config_from_dict(cls, data)
        except ValueError as err:  # ConfigError (unknown key, wrong type) or __post_init__ (bad value)
            raise ValueError(f"{where}: {err}") from None
        except TypeError as err:  # e.g. a JSON list instead of an object
            raise ValueError(f"{where}: expected a JSON object of generation settings ({err})") from None

    @classmethod
    def load(cls, path: str | Path) -> GenerationDefaults:
        """Read a ``generation.json`` file (strictly; see ``from_dict``)."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"generation defaults file {path} does not exist")
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not valid JSON ({err})") from None
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a JSON object of generation settings, got {type(data).__name__}")
        return cls.from_dict(data, str(path))

    def save(self, path: str | Path) -> Path:
        """Write this as a JSON file at ``path``, atomically (a temporary file renamed into place)."""
        from divot.hub import atomic_write_text

        path = Path(path)
        atomic_write_text(path, json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    def save_pretrained(self, directory: str | Path) -> Path:
        """Write ``directory/generation.json`` (the root of a Divot model directory); returns its path."""
        return self.save(Path(directory) / GENERATION_FILE)

    @classmethod
    def from_model_dir(cls, directory: str | Path) -> GenerationDefaults:
        """``directory/generation.json`` if the model directory has one, else ``LIBRARY_DEFAULTS`` (said once per
        directory at info level)."""
        path = Path(directory) / GENERATION_FILE
        if path.is_file():
            return cls.load(path)
        key = str(Path(directory).resolve())
        if key not in _reported:
            _reported.add(key)
            logger.info("%s has no %s: generating with the library defaults (%s)", directory, GENERATION_FILE,
                        LIBRARY_DEFAULTS.describe())
        return LIBRARY_DEFAULTS

    def describe(self) -> str:
        """One line: "sampler dpmsolver++, 20 steps, guidance 7.5, rescale 0.7, eta 1, instruct prompt, <vid> forced"."""
        return (f"sampler {self.sampler}, {self.num_steps} steps, guidance {self.guidance_scale:g}, rescale "
                f"{self.guidance_rescale:g}, eta {self.eta:g}, {self.prompt_format} prompt, "
                f"<vid> {'forced' if self.open_video == 'force' else 'sampled'}")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


LIBRARY_DEFAULTS = GenerationDefaults()
PUBLISHED = GenerationDefaults(sampler="reference", num_steps=50, guidance_scale=7.5, guidance_rescale=0.7, eta=1.0,
                               prompt_format="instruct", open_video="sample", template=DEFAULT_TEMPLATE)
SHAPES_DEMO = GenerationDefaults(guidance_scale=3.0)
