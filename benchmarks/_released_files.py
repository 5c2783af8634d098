"""The released Divot files (DESIGN section 7), written from this project's presets with random weights.

Every tensor name and shape comes from a module built on the meta device (a preset, or a reference config) and
the inverse of the key renaming its converter applies (``divot.convert``); ``check_converts`` then runs that
converter's renaming forward on meta tensors and requires exactly the module's keys and shapes back, so a file
written here is what the converter expects or nothing is written. Values are seeded ``randn * 0.02`` per tensor
(integer buffers are zero): the files rehearse conversion and inference at full size; their outputs mean nothing.

Used by ``benchmarks/paper_rehearsal.py`` and, against the golden reference files, by its test. Imported as
``_released_files`` (the script's folder is first on ``sys.path``).
"""

from __future__ import annotations

import json
import logging
import re
import zlib
from collections.abc import Callable, Iterable
from pathlib import Path

import torch

from divot.convert.keys import CLIP_BLOCK_RULES, RESAMPLER_RULES, rename
from divot.hub import atomic_path, atomic_write_text, check_keys

logger = logging.getLogger(__name__)

Spec = dict[str, tuple[tuple[int, ...], torch.dtype]]  # reference key -> (shape, dtype)
INIT_STD = 0.02


# -- inverting the converters' renaming ------------------------------------------------------------------------
def invert_rule(pattern: str, repl: str) -> tuple[str, str]:
    """The inverse of a ``divot.convert.keys`` rule: ``re.sub(pattern, repl, k)`` undone.

    Supports the rules' form: anchors, escaped literals, non-nested capture groups (each referenced once by
    ``\\N`` in ``repl``). ``(r"^layers\\.(\\d+)\\.1\\.0\\.", r"layers.\\1.ff.norm.")`` gives
    ``(r"^layers\\.(\\d+)\\.ff\\.norm\\.", r"layers.\\g<1>.1.0.")``."""
    start, end = pattern.startswith("^"), pattern.endswith("$") and not pattern.endswith("\\$")
    body = pattern[int(start):len(pattern) - int(end)]
    pieces: list[tuple[str, str]] = []  # ("lit", text) or ("group", regex)
    i = 0
    while i < len(body):
        c = body[i]
        if c == "\\":
            pieces.append(("lit", body[i + 1]))
            i += 2
        elif c == "(":
            j = body.index(")", i)
            if "(" in body[i + 1:j]:
                raise ValueError(f"cannot invert {pattern!r}: nested groups")
            pieces.append(("group", body[i:j + 1]))
            i = j + 1
        elif c in ".*+?[]{}|^$":
            raise ValueError(f"cannot invert {pattern!r}: {c!r} outside a group")
        else:
            pieces.append(("lit", c))
            i += 1
    groups = [p for kind, p in pieces if kind == "group"]
    inverse_pattern, order = "^" if start else "", []
    for m in re.finditer(r"\\(\d+)|(.)", repl, re.S):
        if m.group(1):
            order.append(int(m.group(1)))
            inverse_pattern += groups[order[-1] - 1]
        else:
            inverse_pattern += re.escape(m.group(2))
    if sorted(order) != list(range(1, len(groups) + 1)):
        raise ValueError(f"cannot invert {pattern!r} -> {repl!r}: each group must be used once")
    inverse_repl, g = "", 0
    for kind, p in pieces:
        if kind == "lit":
            inverse_repl += p.replace("\\", "\\\\")
        else:
            g += 1
            inverse_repl += f"\\g<{order.index(g) + 1}>"
    return inverse_pattern + ("$" if end else ""), inverse_repl


def invert_key(key: str, rules: list[tuple[str, str]] | None) -> str:
    """The reference name that ``rename(name, rules)`` turns into ``key`` (checked by renaming it forward)."""
    if not rules:
        return key
    name = rename(key, [invert_rule(p, r) for p, r in rules])
    if rename(name, rules) != key:
        raise ValueError(f"inverting the renaming of {key!r} gave {name!r}, which renames to {rename(name, rules)!r}")
    return name


def module_spec(module: torch.nn.Module) -> Spec:
    return {k: (tuple(v.shape), v.dtype) for k, v in module.state_dict().items()}


def meta_state(spec: Spec) -> dict[str, torch.Tensor]:
    return {k: torch.empty(shape, dtype=dtype, device="meta") for k, (shape, dtype) in spec.items()}


def check_converts(reference: Spec, convert: Callable[[dict], dict], own: Spec, where: str) -> None:
    """Run the converter's renaming on meta tensors of ``reference``: it must give exactly ``own`` (keys, shapes)."""
    out = convert(meta_state(reference))
    check_keys(sorted(set(own) - set(out)), sorted(set(out) - set(own)), f"{where} (written layout, converted)")
    bad = [f"{k}: {tuple(v.shape)} vs {own[k][0]}" for k, v in out.items() if tuple(v.shape) != own[k][0]]
    if bad:
        raise ValueError(f"{where}: converted shapes differ from the module's: {'; '.join(bad[:10])}")


# -- the tokenizer: Divot_tokenizer.bin and OpenCLIP visual.* ---------------------------------------------------
# (our prefix, reference prefix, the converter's rules): what divot.convert.tokenizer.convert_tokenizer_state undoes.
TOKENIZER_PARTS = (
    ("temporal_encoder.", "temporal_encoder.", CLIP_BLOCK_RULES),
    ("spatial_norm.", "norm.", None),
    ("resampler.", "image_proj_model.down_sampler.", RESAMPLER_RULES),
    ("spatial_temporal.", "image_proj_model.", None),
)
# timm VisionTransformer names -> OpenCLIP visual.* names: the inverse of timm's _convert_openai_clip.
OPEN_CLIP_NAMES = [
    (r"^cls_token$", "class_embedding"),
    (r"^pos_embed$", "positional_embedding"),
    (r"^patch_embed\.proj\.", "conv1."),
    (r"^norm_pre\.", "ln_pre."),
    (r"^blocks\.(\d+)\.norm(\d)\.", r"transformer.resblocks.\1.ln_\2."),
    (r"^blocks\.(\d+)\.attn\.qkv\.(weight|bias)$", r"transformer.resblocks.\1.attn.in_proj_\2"),
    (r"^blocks\.(\d+)\.attn\.proj\.", r"transformer.resblocks.\1.attn.out_proj."),
    (r"^blocks\.(\d+)\.mlp\.fc1\.", r"transformer.resblocks.\1.mlp.c_fc."),
    (r"^blocks\.(\d+)\.mlp\.fc2\.", r"transformer.resblocks.\1.mlp.c_proj."),
]


def tokenizer_spec(config) -> Spec:
    """``Divot_tokenizer.bin`` keys (``temporal_encoder.*``, ``norm.*``, ``image_proj_model.*``) for a
    ``TokenizerConfig`` (frame encoder excluded: it comes from OpenCLIP)."""
    from divot.convert.tokenizer import convert_tokenizer_state
    from divot.tokenizer.model import VideoTokenizer

    with torch.device("meta"):
        model = VideoTokenizer(config)
    own = {k: v for k, v in module_spec(model).items() if not k.startswith("frame_encoder.")}
    ref = {}
    for key, value in own.items():
        part = next((p for p in TOKENIZER_PARTS if key.startswith(p[0])), None)
        if part is None:
            raise ValueError(f"tokenizer key {key!r} has no place in the released layout (output_norm must be 'none')")
        ours, theirs, rules = part
        ref[theirs + invert_key(key[len(ours):], rules)] = value
    check_converts(ref, convert_tokenizer_state, own, "Divot_tokenizer.bin")
    return ref


def open_clip_spec(config, embed_dim: int) -> Spec:
    """OpenCLIP ``visual.*`` keys for a ``FrameEncoderConfig``, with ``ln_post`` and the ``proj`` to the
    ``embed_dim``-wide joint space (1024 for ViT-H-14) that every OpenCLIP checkpoint has and Divot drops."""
    from timm.models.vision_transformer import _convert_openai_clip

    from divot.tokenizer.frame_encoder import UNUSED_CLIP_KEYS, FrameEncoder

    with torch.device("meta"):
        vit = FrameEncoder(config).vit
    own = module_spec(vit)
    ref = {}
    for key, (shape, dtype) in own.items():
        name = rename(key, OPEN_CLIP_NAMES)
        if name == key:
            raise ValueError(f"no OpenCLIP name for the timm key {key!r}")
        if name in ("class_embedding", "positional_embedding"):  # timm adds leading singleton axes
            shape = shape[-1:] if name == "class_embedding" else shape[1:]
        ref["visual." + name] = (shape, dtype)
    width = config.width
    ref.update({"visual.ln_post.weight": ((width,), torch.float32), "visual.ln_post.bias": ((width,), torch.float32),
                "visual.proj": ((width, embed_dim), torch.float32)})

    def convert(state):
        out = _convert_openai_clip(state, vit, prefix="visual.")
        return {k: v for k, v in out.items() if k not in UNUSED_CLIP_KEYS}

    check_converts(ref, convert, own, "open_clip_pytorch_model.bin")
    return ref


# -- the de-tokenizer: Divot_detokenizer_stage2.bin -------------------------------------------------------------
def ldm_vae_name(key: str, shape: tuple[int, ...], num_levels: int) -> tuple[str, tuple[int, ...]]:
    """A ``diffusers.AutoencoderKL`` key -> its LDM name and shape (the inverse of diffusers'
    ``convert_ldm_vae_checkpoint``: the mid-block attention projections are 1x1 convolutions in LDM)."""
    from diffusers.loaders.single_file_utils import DIFFUSERS_TO_LDM_MAPPING

    top = DIFFUSERS_TO_LDM_MAPPING["vae"]
    if key in top:
        return top[key], shape
    m = re.fullmatch(r"(encoder|decoder)\.mid_block\.attentions\.0\.(group_norm|to_q|to_k|to_v|to_out\.0)\.(\w+)", key)
    if m:
        name = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}[m[2]]
        conv = m[2] != "group_norm" and m[3] == "weight"
        return f"{m[1]}.mid.attn_1.{name}.{m[3]}", shape + (1, 1) if conv else shape
    patterns = [
        (r"(encoder|decoder)\.mid_block\.resnets\.(\d+)\.(.+)", lambda m: f"{m[1]}.mid.block_{int(m[2]) + 1}.{m[3]}"),
        (r"encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", lambda m: f"encoder.down.{m[1]}.block.{m[2]}.{m[3]}"),
        (r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.+)", lambda m: f"encoder.down.{m[1]}.downsample.conv.{m[2]}"),
        (r"decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.(.+)",
         lambda m: f"decoder.up.{num_levels - 1 - int(m[1])}.block.{m[2]}.{m[3]}"),
        (r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.+)",
         lambda m: f"decoder.up.{num_levels - 1 - int(m[1])}.upsample.conv.{m[2]}"),
    ]
    for pattern, name in patterns:
        m = re.fullmatch(pattern, key)
        if m:
            return name(m).replace(".conv_shortcut.", ".nin_shortcut."), shape
    raise ValueError(f"no LDM name for the diffusers VAE key {key!r}")


def detokenizer_spec(unet_config, condition_config, vae_config) -> Spec:
    """``Divot_detokenizer_stage2.bin`` keys: ``diffusion_model.*``, ``image_proj_model.*``, ``first_stage_model.*``."""
    from divot.convert.detokenizer import (
        CONDITION_PREFIX,
        UNET_PREFIX,
        UNET_RULES,
        VAE_PREFIX,
        convert_detokenizer_state,
    )
    from divot.diffusion.condition import ConditionResampler
    from divot.diffusion.unet import VideoUNet
    from divot.diffusion.vae import build_vae

    with torch.device("meta"):
        own = {"unet": module_spec(VideoUNet(unet_config)), "condition": module_spec(ConditionResampler(condition_config)),
               "vae": module_spec(build_vae(vae_config))}
    ref = {UNET_PREFIX + invert_key(k, UNET_RULES): v for k, v in own["unet"].items()}
    ref.update({CONDITION_PREFIX + invert_key(k, RESAMPLER_RULES): v for k, v in own["condition"].items()})
    for key, (shape, dtype) in own["vae"].items():
        name, ldm_shape = ldm_vae_name(key, shape, len(vae_config.ch_mult))
        ref[VAE_PREFIX + name] = (ldm_shape, dtype)
    for part in own:
        check_converts(ref, lambda s, p=part: convert_detokenizer_state(s, vae_config)[p], own[part],
                       f"Divot_detokenizer_stage2.bin ({part})")
    return ref


# -- the LLM: Divot_sft_comp/llm (Hugging Face) and agent/pytorch_model.bin -------------------------------------
AGENT_PARTS = (("input_proj.", "input_resampler.proj."), ("gmm_head.proj.", "output_resampler.proj."))


def llm_specs(llm_config, vocab_size: int) -> tuple[object, Spec, Spec]:
    """(the HF config of the merged LLM, its state-dict spec, the agent file's spec) for a ``DivotLLMConfig``
    whose ``base`` gives the LLM's shape."""
    from transformers import AutoModelForCausalLM

    from divot.convert.llm import config_from_agent_state, convert_agent_state
    from divot.llm.model import DivotLLM

    hf_config = llm_config.base.to_hf(vocab_size=vocab_size)
    with torch.device("meta"):
        llm = AutoModelForCausalLM.from_config(hf_config)
        model = DivotLLM(llm_config, llm)
    hf_config.architectures = [type(llm).__name__]  # what a saved HF model records (MistralForCausalLM)
    llm_spec = module_spec(llm)
    own = module_spec(model.projections())
    agent = {}
    for key, value in own.items():
        ours, theirs = next(p for p in AGENT_PARTS if key.startswith(p[0]))
        agent[theirs + key[len(ours):]] = value
    check_converts(agent, convert_agent_state, own, "agent/pytorch_model.bin")
    inferred = config_from_agent_state(meta_state(agent), llm_config.num_queries)
    if (inferred.hidden_size, inferred.token_dim, inferred.gmm_components) != (
            llm_config.hidden_size, llm_config.token_dim, llm_config.gmm_components):
        raise ValueError(f"the agent file would read as h, d, k = {inferred.hidden_size}, {inferred.token_dim}, "
                         f"{inferred.gmm_components}")
    return hf_config, llm_spec, agent


# -- writing ----------------------------------------------------------------------------------------------------
def random_tensor(name: str, shape: tuple[int, ...], dtype: torch.dtype, seed: int) -> torch.Tensor:
    """Seeded by (seed, name): the same file whatever order the tensors are written in."""
    if not dtype.is_floating_point:
        return torch.zeros(shape, dtype=dtype)
    gen = torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(name.encode()))
    return torch.randn(shape, generator=gen, dtype=torch.float32).mul_(INIT_STD).to(dtype)


def spec_bytes(spec: Spec) -> int:
    return sum(torch.Size(shape).numel() * dtype.itemsize for shape, dtype in spec.values())


def write_pickle(spec: Spec, path: Path, seed: int) -> Path:
    """``torch.save`` of a state dict of ``spec`` (what the reference's ``.bin`` files are), atomically."""
    state = {k: random_tensor(k, shape, dtype, seed) for k, (shape, dtype) in spec.items()}
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    logger.info("wrote %s: %d tensors, %.2f GB", path, len(state), spec_bytes(spec) / 1e9)
    return path


def shard_groups(spec: Spec, max_shard_bytes: int) -> list[list[str]]:
    """Keys grouped into shards of whole units (a decoder layer, the embeddings, ...), in state-dict order,
    each shard at most ``max_shard_bytes`` unless one unit alone is larger."""
    units: dict[str, list[str]] = {}
    for key in spec:
        m = re.match(r"(.*\.layers\.\d+)\.", key)
        units.setdefault(m[1] if m else key, []).append(key)
    shards: list[list[str]] = [[]]
    size = 0
    for keys in units.values():
        unit = spec_bytes({k: spec[k] for k in keys})
        if shards[-1] and size + unit > max_shard_bytes:
            shards.append([])
            size = 0
        shards[-1].extend(keys)
        size += unit
    return shards


def write_hf_llm(hf_config, spec: Spec, out_dir: Path, seed: int, max_shard_bytes: int) -> Path:
    """A Hugging Face model folder: ``config.json``, ``model-0000i-of-0000n.safetensors`` and the index, written
    shard by shard (one shard's tensors in memory at a time)."""
    from safetensors.torch import save_file

    out_dir.mkdir(parents=True, exist_ok=True)
    groups = shard_groups(spec, max_shard_bytes)
    weight_map = {}
    for i, keys in enumerate(groups, 1):
        name = f"model-{i:05d}-of-{len(groups):05d}.safetensors"
        tensors = {k: random_tensor(k, *spec[k], seed) for k in keys}
        with atomic_path(out_dir / name) as tmp:
            save_file(tensors, str(tmp), metadata={"format": "pt"})
        del tensors
        weight_map.update(dict.fromkeys(keys, name))
        logger.info("wrote %s (%d tensors)", out_dir / name, len(keys))
    index = {"metadata": {"total_size": spec_bytes(spec)}, "weight_map": weight_map}
    atomic_write_text(out_dir / "model.safetensors.index.json", json.dumps(index, indent=2) + "\n")
    hf_config.dtype = torch.float32
    hf_config.save_pretrained(out_dir)
    return out_dir


def sizes(paths: Iterable[Path]) -> int:
    """Bytes under the given files / folders (absent ones count 0)."""
    total = 0
    for path in paths:
        if path.is_file():
            total += path.stat().st_size
        elif path.is_dir():
            total += sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return total


# -- reference configs (the --config JSONs of `divot convert`) ---------------------------------------------------
# Reference argument -> DetokenizerConfig field; the inverse of divot.diffusion.config's *_from_reference.
UNET_REFERENCE_NAMES = {
    "in_channels": "in_channels", "out_channels": "out_channels", "model_channels": "model_channels",
    "channel_mult": "channel_mult", "num_res_blocks": "num_res_blocks", "attention_resolutions": "attention_resolutions",
    "num_head_channels": "head_dim", "context_dim": "context_dim", "transformer_depth": "transformer_depth",
    "dropout": "dropout", "use_linear": "use_linear", "temporal_conv": "temporal_conv",
    "temporal_attention": "temporal_attention", "addition_attention": "init_attention",
    "image_cross_attention": "image_cross_attention", "image_cross_attention_scale_learnable": "image_gate_learnable",
    "temporal_length": "num_frames", "default_fs": "default_fs", "fs_condition": "fs_condition",
}
CONDITION_REFERENCE_NAMES = {"dim": "dim", "depth": "depth", "dim_head": "head_dim", "heads": "num_heads",
                             "num_queries": "num_queries", "embedding_dim": "input_dim", "output_dim": "output_dim",
                             "ff_mult": "ff_mult"}
VAE_REFERENCE_NAMES = {"z_channels": "z_channels", "resolution": "resolution", "in_channels": "in_channels",
                       "out_ch": "out_channels", "ch": "ch", "ch_mult": "ch_mult", "num_res_blocks": "num_res_blocks"}


def _plain(value):
    return list(value) if isinstance(value, tuple) else value


def reference_detokenizer_args(config) -> dict:
    """The ``divot convert detokenizer --config`` JSON (reference ``unet``, ``image_proj_model``, ``ddconfig``)
    for a ``DetokenizerConfig``; checked by reading it back with the converter's own functions."""
    from divot.diffusion.config import (
        _FIXED_REFERENCE_SWITCHES,
        condition_config_from_reference,
        unet_config_from_reference,
        vae_config_from_reference,
    )

    unet = {ref: _plain(getattr(config.unet, ours)) for ref, ours in UNET_REFERENCE_NAMES.items()}
    unet.update(_FIXED_REFERENCE_SWITCHES)
    condition = {ref: getattr(config.condition, ours) for ref, ours in CONDITION_REFERENCE_NAMES.items()}
    ddconfig = {"double_z": True, "attn_resolutions": [], "dropout": 0.0,
                **{ref: _plain(getattr(config.vae, ours)) for ref, ours in VAE_REFERENCE_NAMES.items()}}
    back = (unet_config_from_reference(unet), condition_config_from_reference(condition),
            vae_config_from_reference(ddconfig, config.vae.scale_factor))
    if back != (config.unet, config.condition, config.vae):
        raise ValueError("the de-tokenizer config has fields the reference arguments cannot express "
                         "(a tiny-preset training aid?)")
    return {"unet": unet, "image_proj_model": condition, "ddconfig": ddconfig, "scale_factor": config.vae.scale_factor,
            "num_tokens": config.num_tokens, "frame_size": config.frame_size}
