"""Convert a released Divot-LLM into a ``DivotLLM`` directory shard by shard, never building the LLM.

At paper size the merged Mistral-7B is 29 GB in float32: loading it whole (``convert_llm``) needs that much RAM.
Here the source folder (``model.safetensors``, ``model-0000i-of-0000n.safetensors`` + index, or the ``.bin``
equivalents) is read one tensor at a time, each tensor is cast to the target dtype and output shards of at most
``max_shard_bytes`` are written, so the peak memory is about one output shard. The checks are those of
``AutoModelForCausalLM.from_pretrained``, done before anything is written: the model is built on the meta device
and the key set and every shape must match (tied weights and the keys transformers ignores on load as it does).

The written directory is what ``convert_llm(...).save_pretrained(out)`` writes: ``llm/`` (a Hugging Face model
folder with the tokenizer files), ``model.safetensors`` (the projections) and ``config.json``; tensor for tensor
the same values. ``llm/`` is assembled in a hidden folder and renamed into place, ``config.json`` is written last:
an interrupted conversion leaves no directory that loads.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import uuid
from pathlib import Path
from types import SimpleNamespace

import torch
from tqdm.auto import tqdm

from divot.convert.llm import check_vocab, load_released_tokenizer, read_agent
from divot.hub import CONFIG_NAME, WEIGHTS_NAME, atomic_write_text, check_keys, save_state_dict

logger = logging.getLogger(__name__)

DEFAULT_MAX_SHARD_BYTES = 2 * 1024**3
SAFETENSORS_INDEX = "model.safetensors.index.json"
BIN_INDEX = "pytorch_model.bin.index.json"
SAFETENSORS_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
                      "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
                      "U8": torch.uint8, "BOOL": torch.bool}


def source_files(llm_dir: Path) -> list[Path]:
    """The weight files of a Hugging Face model folder, safetensors first (as transformers prefers them)."""
    for index_name, single in ((SAFETENSORS_INDEX, "model.safetensors"), (BIN_INDEX, "pytorch_model.bin")):
        if (llm_dir / index_name).is_file():
            weight_map = json.loads((llm_dir / index_name).read_text())["weight_map"]
            files = [llm_dir / name for name in dict.fromkeys(weight_map.values())]
            absent = [f.name for f in files if not f.is_file()]
            if absent:
                raise FileNotFoundError(f"{llm_dir / index_name} names missing shard(s): {absent}")
            return files
        if (llm_dir / single).is_file():
            return [llm_dir / single]
    raise FileNotFoundError(f"no weights in {llm_dir}: expected model.safetensors, {SAFETENSORS_INDEX}, "
                            f"pytorch_model.bin or {BIN_INDEX}")


def _load_bin(path: Path) -> dict[str, torch.Tensor]:
    """A ``.bin`` shard, memory-mapped (``weights_only=True``): tensors are read from disk when used."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError:  # the legacy (pre-zip) pickle format cannot be mapped
        logger.info("%s is in the legacy torch.save format: reading it whole", path)
        return torch.load(path, map_location="cpu", weights_only=True)


def read_source_index(llm_dir: Path) -> dict[str, tuple[Path, tuple[int, ...], torch.dtype]]:
    """Every tensor of the folder: key -> (file, shape, dtype), in file order; no tensor data is read."""
    from safetensors import safe_open

    index: dict[str, tuple[Path, tuple[int, ...], torch.dtype]] = {}
    for path in source_files(llm_dir):
        if path.suffix == ".safetensors":
            with safe_open(str(path), framework="pt") as f:
                entries = []
                for key in f.keys():
                    piece = f.get_slice(key)
                    name = piece.get_dtype()
                    if name not in SAFETENSORS_DTYPES:
                        raise ValueError(f"{path}: {key} has dtype {name}, which this converter does not read")
                    entries.append((key, tuple(piece.get_shape()), SAFETENSORS_DTYPES[name]))
        else:
            entries = [(k, tuple(v.shape), v.dtype) for k, v in _load_bin(path).items()]
        for key, shape, dtype in entries:
            if key in index:
                raise ValueError(f"{llm_dir}: {key} is in both {index[key][0].name} and {path.name}")
            index[key] = (path, shape, dtype)
    return index


def expected_llm(config, dtype: torch.dtype):
    """The causal LM transformers builds for ``config`` (on the meta device: no memory) and the tensors it
    saves: key -> (shape, dtype). Tied weights (``lm_head.weight`` with ``tie_word_embeddings``) are not saved."""
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    tied = set(getattr(model, "all_tied_weights_keys", None) or ())
    state = {k: (tuple(v.shape), v.dtype) for k, v in model.state_dict().items() if k not in tied}
    return model, state, tied


def select_keys(model, expected: dict, source: dict, tied: set[str], where: str) -> list[str]:
    """The source keys to write, in source order; raises ``ValueError`` naming missing, unexpected and
    mis-shaped tensors. Keys transformers ignores on load are left out (logged), as ``from_pretrained`` would."""
    info = SimpleNamespace(missing_keys={k for k in expected if k not in source},
                           unexpected_keys={k for k in source if k not in expected and k not in tied})
    ignored = set(info.unexpected_keys)
    adjust = getattr(model, "_adjust_missing_and_unexpected_keys", None)  # transformers' ignore rules, as on load
    if adjust is not None:  # (e.g. the per-layer rotary_emb.inv_freq of older checkpoints)
        adjust(info)
    ignored -= info.unexpected_keys
    check_keys(sorted(info.missing_keys), sorted(info.unexpected_keys), where)
    skipped = ignored | (tied & set(source))
    if skipped:
        logger.info("%s: left out %d tensor(s) the model does not load: %s", where, len(skipped), sorted(skipped)[:5])
    keys = [k for k in source if k not in skipped]
    bad = [f"{k}: model {expected[k][0]} vs file {source[k][1]}" for k in keys if expected[k][0] != source[k][1]]
    if bad:
        raise ValueError(f"{where}: shape mismatch for {len(bad)} tensor(s): " + "; ".join(bad[:20]))
    return keys


def plan_shards(keys: list[str], source: dict, nbytes: dict[str, int], max_shard_bytes: int) -> list[list[str]]:
    """Group the keys (in source order) into output shards: a shard never spans two source files and holds at
    most ``max_shard_bytes`` (output dtype) unless one tensor alone is larger."""
    shards: list[list[str]] = []
    size, path = 0, None
    for key in keys:
        if not shards or source[key][0] != path or (shards[-1] and size + nbytes[key] > max_shard_bytes):
            shards.append([])
            size, path = 0, source[key][0]
        shards[-1].append(key)
        size += nbytes[key]
    return shards


def read_tensor(path: Path, key: str, bin_state: dict | None) -> torch.Tensor:
    """One source tensor. A safetensors file is opened per tensor so its mapping (counted in the RSS while
    open) never grows past one tensor."""
    if bin_state is not None:
        return bin_state[key]
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return f.get_tensor(key)


def write_shards(source: dict, shards: list[list[str]], targets: dict[str, torch.dtype], out: Path,
                 progress: bool = True) -> None:
    """Cast and write the planned shards into ``out`` (+ the index when there are several); one shard in memory."""
    total = sum(torch.Size(source[k][1]).numel() * targets[k].itemsize for shard in shards for k in shard)
    names = (["model.safetensors"] if len(shards) == 1 else
             [f"model-{i:05d}-of-{len(shards):05d}.safetensors" for i in range(1, len(shards) + 1)])
    weight_map = {}
    bar = tqdm(total=total, unit="B", unit_scale=True, desc="convert llm", disable=not progress)
    for name, keys in zip(names, shards, strict=True):
        path = source[keys[0]][0]
        bin_state = _load_bin(path) if path.suffix != ".safetensors" else None
        tensors = {}
        for key in keys:
            tensors[key] = read_tensor(path, key, bin_state).to(targets[key])
            bar.update(tensors[key].nbytes)
        save_state_dict(tensors, out / name)
        del tensors, bin_state
        weight_map.update(dict.fromkeys(keys, name))
        logger.info("wrote %s (%d tensors)", out / name, len(keys))
    bar.close()
    if len(shards) > 1:
        index = {"metadata": {"total_size": total}, "weight_map": weight_map}
        atomic_write_text(out / SAFETENSORS_INDEX, json.dumps(index, indent=2) + "\n")


def convert_llm_to_dir(llm_dir: str | Path, agent_ckpt: str | Path, tokenizer_dir: str | Path, out_dir: str | Path,
                       num_queries: int = 64, dtype: torch.dtype = torch.bfloat16,
                       max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES, progress: bool = True) -> Path:
    """Write the ``DivotLLM`` directory of a released Divot-LLM to ``out_dir``, streaming the LLM's shards.

    Same inputs, checks and output as ``convert_llm(...).save_pretrained(out_dir)`` (floating-point tensors in
    ``dtype``), with the peak memory of one output shard (``max_shard_bytes``, bytes in ``dtype``) instead of
    the whole LLM. Returns ``out_dir``."""
    from transformers import AutoConfig, GenerationConfig

    from divot.config import config_to_dict
    from divot.hub import load_state_dict_strict
    from divot.llm.model import LLM_SUBDIR, DivotLLM
    from divot.llm.tokens import save_text_tokenizer

    if max_shard_bytes <= 0:
        raise ValueError(f"max_shard_bytes must be positive, got {max_shard_bytes}")
    llm_dir, out = Path(llm_dir), Path(out_dir)
    tokenizer = load_released_tokenizer(tokenizer_dir)
    config, projections = read_agent(agent_ckpt, num_queries)
    if not (llm_dir / CONFIG_NAME).is_file():
        raise FileNotFoundError(f"no Hugging Face model in {llm_dir} (config.json missing)")
    hf_config = AutoConfig.from_pretrained(str(llm_dir))
    llm, expected, tied = expected_llm(hf_config, dtype)
    source = read_source_index(llm_dir)
    keys = select_keys(llm, expected, source, tied, str(llm_dir))
    check_vocab(tokenizer, llm.get_input_embeddings().weight.shape[0], tokenizer_dir, llm_dir)
    model = DivotLLM(config, llm, tokenizer)  # the LLM stays on meta; checks the widths, builds the projections
    load_state_dict_strict(model.projections(), projections, str(agent_ckpt))
    model.projections().to(dtype)
    # Floating tensors take the dtype transformers gives them for ``dtype``; others keep theirs.
    targets = {k: expected[k][1] if source[k][2].is_floating_point else source[k][2] for k in keys}
    nbytes = {k: torch.Size(source[k][1]).numel() * targets[k].itemsize for k in keys}
    shards = plan_shards(keys, source, nbytes, max_shard_bytes)

    out.mkdir(parents=True, exist_ok=True)
    stage = out / f".{LLM_SUBDIR}.partial-{uuid.uuid4().hex[:8]}"
    stage.mkdir()
    try:
        write_shards(source, shards, targets, stage, progress)
        hf_config.dtype = dtype
        hf_config.architectures = [type(llm).__name__]
        hf_config.save_pretrained(str(stage))
        # As from_pretrained reads it: generation_config.json, else the generation fields of config.json.
        generation = (GenerationConfig.from_pretrained(str(llm_dir)) if (llm_dir / "generation_config.json").is_file()
                      else GenerationConfig.from_pretrained(str(llm_dir), config_file_name=CONFIG_NAME,
                                                            _from_model_config=True))
        generation.save_pretrained(str(stage))
        save_text_tokenizer(tokenizer, stage)
        (out / CONFIG_NAME).unlink(missing_ok=True)  # an earlier conversion here is no longer whole
        target = out / LLM_SUBDIR
        old = out / f".{LLM_SUBDIR}.old-{uuid.uuid4().hex[:8]}"
        if target.exists():
            os.replace(target, old)
        os.replace(stage, target)
        shutil.rmtree(old, ignore_errors=True)
        save_state_dict(model.state_dict_for_saving(), out / WEIGHTS_NAME)
        payload = {"model_type": DivotLLM.model_type, **config_to_dict(config)}
        atomic_write_text(out / CONFIG_NAME, json.dumps(payload, indent=2) + "\n")  # last: the directory is whole
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    logger.info("converted Divot-LLM to %s: h=%d, d=%d, k=%d, q=%d, %d LLM tensors in %d shard(s) (%s)", out,
                config.hidden_size, config.token_dim, config.gmm_components, num_queries, len(keys), len(shards),
                str(dtype).removeprefix("torch."))
    return out
