"""``save_pretrained`` / ``from_pretrained``: a directory holding ``config.json`` + ``model.safetensors``.

Loading is strict: a missing or unexpected key is an error that names the keys. Writes are atomic (a
temporary file renamed into place) so an interrupted save never leaves a half-written checkpoint.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors.torch import save_file

from divot.config import config_from_dict, config_to_dict

logger = logging.getLogger(__name__)

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


@contextmanager
def atomic_path(path: str | Path):
    """Yield a temporary path next to ``path``; rename it onto ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def save_state_dict(state_dict: dict[str, torch.Tensor], path: str | Path, metadata: dict | None = None) -> None:
    """Save tensors as safetensors atomically. Only tensors that safetensors cannot write as they are (not
    contiguous, a view into a larger storage, or sharing storage with an earlier tensor) are copied: at paper size
    a copy of everything would double the memory of saving a 6 GB de-tokenizer."""
    tensors, seen = {}, set()
    for key, value in state_dict.items():
        value = value.detach()
        storage = value.untyped_storage()
        whole = value.is_contiguous() and value.storage_offset() == 0 and storage.nbytes() == value.nbytes
        ptr = storage.data_ptr()
        tensors[key] = value if whole and ptr not in seen else value.contiguous().clone()
        seen.add(ptr)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata or {"format": "pt"})


def check_keys(missing: list[str], unexpected: list[str], where: str) -> None:
    """Raise a ``KeyError``-like ``ValueError`` listing missing / unexpected keys (first 20 of each)."""
    if not missing and not unexpected:
        return
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing key(s): {', '.join(sorted(missing)[:20])}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected key(s): {', '.join(sorted(unexpected)[:20])}")
    raise ValueError(f"{where}: state dict does not match the model; " + "; ".join(parts))


def load_state_dict_strict(module: torch.nn.Module, state_dict: dict[str, torch.Tensor], where: str,
                          assign: bool = False) -> None:
    """``load_state_dict`` that raises a readable error naming every gap, and checks shapes. ``assign``: adopt
    the given tensors instead of copying into the module's (for a module built without memory, on ``meta``)."""
    own = module.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    check_keys(missing, unexpected, where)
    bad = [f"{k}: model {tuple(own[k].shape)} vs file {tuple(v.shape)}"
           for k, v in state_dict.items() if tuple(own[k].shape) != tuple(v.shape)]
    if bad:
        raise ValueError(f"{where}: shape mismatch for {len(bad)} tensor(s): " + "; ".join(bad[:20]))
    module.load_state_dict(state_dict, strict=True, assign=assign)
    if assign:
        left = [n for n, t in (*module.named_parameters(), *module.named_buffers()) if t.is_meta]
        if left:
            raise ValueError(f"{where}: tensors not in the file stayed uninitialised: {left[:10]}")


class PretrainedMixin:
    """Adds ``save_pretrained`` / ``from_pretrained`` to an ``nn.Module`` built as ``cls(config)``.

    Subclasses set ``config_class`` and ``model_type``. ``persistent_prefixes_excluded`` names state-dict
    prefixes that are not saved because they legitimately live elsewhere (declared, never silent).
    """

    config_class: type
    model_type: str = "divot"

    def state_dict_for_saving(self) -> dict[str, torch.Tensor]:
        return self.state_dict()

    def save_pretrained(self, directory: str | Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        payload = {"model_type": self.model_type, **config_to_dict(self.config)}
        save_state_dict(self.state_dict_for_saving(), directory / WEIGHTS_NAME)
        atomic_write_text(directory / CONFIG_NAME, json.dumps(payload, indent=2) + "\n")
        logger.info("saved %s to %s", type(self).__name__, directory)
        return directory

    @classmethod
    def load_config(cls, directory: str | Path):
        directory = Path(directory)
        cfg_path = directory / CONFIG_NAME
        if not cfg_path.is_file():
            raise FileNotFoundError(f"{cls.__name__}.from_pretrained: no {CONFIG_NAME} in {directory}")
        data = json.loads(cfg_path.read_text())
        model_type = data.pop("model_type", cls.model_type)
        if model_type != cls.model_type:
            raise ValueError(
                f"{directory} holds a {model_type!r} model, not a {cls.model_type!r} ({cls.__name__})"
            )
        return config_from_dict(cls.config_class, data)

    @classmethod
    def from_pretrained(cls, directory: str | Path, device: str | torch.device | None = None,
                        dtype: torch.dtype | None = None):
        """Load a saved directory strictly. ``dtype``: the floating weights' dtype (None: as saved); ``device``:
        where they go. The module is built on the meta device and each tensor of the file is read straight into
        its dtype and device, so loading holds one copy of the weights, never two (see ``load_dtype_rule``)."""
        directory = Path(directory)
        config = cls.load_config(directory)
        weights = directory / WEIGHTS_NAME
        if not weights.is_file():
            raise FileNotFoundError(f"{cls.__name__}.from_pretrained: no {WEIGHTS_NAME} in {directory}")
        # Parameters are created on the meta device (no memory, no random initialisation) and then adopt the
        # file's tensors. Buffers are built as usual (some are constants that the file does not hold).
        from accelerate import init_empty_weights

        from divot.weights_io import load_safetensors

        with init_empty_weights(include_buffers=False):
            model = cls(config)
        rule = model.load_dtype_rule(dtype, device)
        state = load_safetensors(weights, rule, device, on_read=model.weight_read_hook())
        model.load_saved_state_dict(state, where=str(weights), assign=True)
        del state
        if device is not None:
            model.to(device)  # the buffers the file does not hold
        return model

    def weight_read_hook(self):
        """None, or ``(key, stored tensor) -> None`` that ``from_pretrained`` calls with each tensor it casts,
        before the cast (after ``load_dtype_rule``). Tensors it sees are read whole before they are cast."""
        return None

    def load_dtype_rule(self, dtype, device=None):
        """How ``from_pretrained`` casts each saved tensor: ``(key, stored dtype) -> dtype``. The default casts
        every floating tensor to ``dtype`` (None keeps the file's); subclasses may keep parts in float32."""
        from divot.weights_io import cast_floating

        if dtype is not None and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
            raise ValueError(f"{type(self).__name__}: dtype must be a floating torch dtype or None, got {dtype!r}")
        return cast_floating(dtype)

    def load_saved_state_dict(self, state_dict: dict[str, torch.Tensor], where: str, assign: bool = False) -> None:
        load_state_dict_strict(self, state_dict, where, assign)

    @classmethod
    def from_pretrained_or_preset(cls, spec: str | Path, device: str | torch.device | None = None,
                                  warn_random: bool = True):
        """A saved directory, else a named preset with random weights (logged as such unless training from
        scratch says so); a name that is neither is a ``FileNotFoundError`` listing the presets."""
        if Path(spec).is_dir():
            return cls.from_pretrained(spec, device=device)
        try:
            model = cls.from_preset(str(spec))
        except ValueError:
            raise FileNotFoundError(f"{cls.__name__}: {str(spec)!r} is neither a directory nor a preset name "
                                    f"({', '.join(sorted(cls.presets()))})") from None
        if warn_random:
            logger.warning("%s: using the %r preset with RANDOM weights", cls.__name__, str(spec))
        return model.to(device or "cpu")
