"""Where and how ``Divot``'s parts load: per-part devices and dtypes, and parts read on first use.

A Divot model directory holds ``tokenizer/`` (video -> tokens), ``llm/`` (the Divot-LLM) and, optionally,
``detokenizer/`` and ``story_llm/``. Loading reads only what a call uses: asking never reads the de-tokenizer,
generating a video never reads the video tokenizer (a ``LazyPart`` loads on first use), and each part reads its
file straight into its dtype and device (``divot.hub``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace

import torch

logger = logging.getLogger(__name__)

PART_NAMES = ("tokenizer", "llm", "detokenizer")
DTYPE_NAMES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
               "float16": torch.float16, "fp16": torch.float16}
QUANTIZATIONS = (None, "8bit", "4bit")


def for_part(value, part: str, what: str):
    """A per-part option: one value for every part, or a dict ``{part: value}`` (parts left out get None)."""
    if isinstance(value, dict):
        unknown = sorted(set(value) - set(PART_NAMES))
        if unknown:
            raise ValueError(f"{what}: unknown part(s) {unknown}; the parts are {list(PART_NAMES)}")
        return value.get(part)
    return value


def parse_dtype(value, what: str, allow_auto: bool = False):
    """A torch dtype from a dtype or its name ("bfloat16", "bf16", ...); None stays None; "auto" where allowed."""
    if value is None or isinstance(value, torch.dtype):
        if isinstance(value, torch.dtype) and not value.is_floating_point:
            raise ValueError(f"{what}: {value} is not a floating dtype")
        return value
    if allow_auto and value == "auto":
        return "auto"
    if isinstance(value, str) and value.removeprefix("torch.") in DTYPE_NAMES:
        return DTYPE_NAMES[value.removeprefix("torch.")]
    choices = (["auto"] if allow_auto else []) + sorted(DTYPE_NAMES)
    raise ValueError(f"{what}: unknown dtype {value!r}; choose from {choices}")


def check_quantization(quantization) -> None:
    if quantization not in QUANTIZATIONS:
        raise ValueError(f"quantization must be one of {list(QUANTIZATIONS)}, got {quantization!r}")


class LazyPart:
    """A saved part (``cls.from_pretrained(path, **options)``) that is read the first time it is used. Its config
    is read at once (cheap) so that shapes are checked before any weights are."""

    def __init__(self, name: str, cls, path: str | Path, **options):
        self.name, self.cls, self.path, self.options = name, cls, Path(path), options

    def config(self):
        """The part's config, or None when it cannot be read (logged: only the calls that need the part fail)."""
        try:
            return self.cls.load_config(self.path)
        except (FileNotFoundError, ValueError, TypeError, KeyError) as err:
            logger.warning("the %s in %s cannot be read (%s): calls that need it will fail", self.name, self.path,
                           err)
            return None

    def shapes(self):
        """What ``check_token_shapes`` needs, without the weights (None when the config cannot be read)."""
        config = self.config()
        return None if config is None else SimpleNamespace(config=config)

    def load(self):
        logger.info("loading the %s from %s", self.name, self.path)
        options = dict(self.options)
        offload = options.pop("offload", False)
        if offload:  # loaded on the CPU; each module visits the device only while it runs
            device = options.pop("device", None)
        try:
            module = self.cls.from_pretrained(self.path, **options).eval()
        except Exception as err:  # a damaged file: name it, whatever the reader raised
            raise ValueError(f"cannot load the {self.name} from {self.path}: {type(err).__name__}: {err}") from err
        if offload:
            module.enable_cpu_offload(device)
        return module
