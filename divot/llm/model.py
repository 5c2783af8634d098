"""``DivotLLM``: a stock Hugging Face causal LM + the input projection + the GMM head.

Comprehension: the embeddings at the frame-token positions of each input clip are replaced by the projected
clip tokens (Linear d->h, GELU, Linear h->h; count-checked). Generation: the frame tokens of a generated clip stay
learnable queries; they attend to each other bidirectionally (4D mask) and the LLM's last hidden states there
(after the final norm) go through the GMM head. Loss = lm_weight x next-token CE + gmm_weight x GMM NLL / d.

Saved as a directory: ``config.json`` (``DivotLLMConfig``), ``model.safetensors`` (the projections:
``input_proj.*``, ``gmm_head.*``) and ``llm/``, a plain HF model directory with the tokenizer files.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from divot.config import config_to_dict
from divot.constants import IGNORE_INDEX
from divot.hub import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    PretrainedMixin,
    atomic_write_text,
    check_keys,
    load_state_dict_strict,
    save_state_dict,
)
from divot.llm.config import LLM_PRESETS, DivotLLMConfig, llm_preset
from divot.llm.generation import DivotGenerationMixin
from divot.llm.gmm import GMMHead
from divot.llm.loading import execution_device, is_placed, last_hidden_device, llm_load_kwargs
from divot.llm.masks import build_attention_mask_4d, has_queries, llm_mask
from divot.llm.tokens import (
    DivotTokenIds,
    add_special_tokens,
    embedding_shape,
    resize_embeddings,
    save_text_tokenizer,
)

logger = logging.getLogger(__name__)

LLM_SUBDIR = "llm"


class DivotLLM(DivotGenerationMixin, PretrainedMixin, nn.Module):
    """Divot-LLM. ``llm`` is any ``transformers`` causal LM; ``tokenizer`` (needed for generation and saving)
    must hold the Divot tokens. Build with ``from_llm`` / ``from_preset`` / ``from_pretrained``."""

    config_class = DivotLLMConfig
    model_type = "divot-llm"

    def __init__(self, config: DivotLLMConfig, llm: nn.Module, tokenizer=None):
        super().__init__()
        rows, width = embedding_shape(llm.get_input_embeddings().weight)  # ZeRO-3: the full shape
        if width != config.hidden_size:
            raise ValueError(f"the LLM's hidden size is {width}, the Divot-LLM config expects {config.hidden_size}")
        self.config = config
        self.llm = llm
        d, h = config.token_dim, config.hidden_size
        self.input_proj = nn.Sequential(nn.Linear(d, h), nn.GELU(), nn.Linear(h, h))
        self.gmm_head = GMMHead(h, d, config.gmm_components, config.var_min)
        self.tokenizer = tokenizer
        self.token_ids = DivotTokenIds.from_tokenizer(tokenizer) if tokenizer is not None else None
        if tokenizer is not None and len(tokenizer) > rows:
            raise ValueError(f"the tokenizer has {len(tokenizer)} tokens but the LLM only {rows} embedding rows")

    # -- construction -------------------------------------------------------------------------------------
    @classmethod
    def from_llm(cls, llm, tokenizer, config: DivotLLMConfig | None = None,
                 dtype: torch.dtype | None = None) -> DivotLLM:
        """Wrap a causal LM (a HF directory / hub name, a ``transformers`` config for random weights, or a
        model) with fresh projections. Adds the Divot tokens to ``tokenizer`` (a path or an object) and grows
        the embeddings with the Divot initialisation (new input rows = mean, new lm_head rows = 3 x mean)."""
        from transformers import AutoModelForCausalLM, AutoTokenizer, PretrainedConfig

        if isinstance(tokenizer, (str, Path)):
            tokenizer = AutoTokenizer.from_pretrained(str(tokenizer))
        if isinstance(llm, (str, Path)):
            llm = AutoModelForCausalLM.from_pretrained(str(llm), dtype=dtype or torch.float32)
        elif isinstance(llm, PretrainedConfig):
            llm = AutoModelForCausalLM.from_config(llm, dtype=dtype or torch.float32)
        add_special_tokens(tokenizer)
        resize_embeddings(llm, len(tokenizer))
        ids = DivotTokenIds.from_tokenizer(tokenizer)
        llm.config.pad_token_id = ids.pad
        width = embedding_shape(llm.get_input_embeddings().weight)[1]
        config = config if config is not None else DivotLLMConfig(hidden_size=width)
        model = cls(config, llm, tokenizer)
        if dtype is not None:
            model.to(dtype)
        return model

    @classmethod
    def from_preset(cls, name: str, tokenizer=None) -> DivotLLM:
        """A preset with a freshly built, randomly initialised base LLM (``tiny``: a 2-layer Mistral).

        Without ``tokenizer`` the ``tiny`` preset trains the small shapes-world tokenizer (a second or so).
        """
        config = llm_preset(name)
        if tokenizer is None:
            if name != "tiny":
                raise ValueError(f"the {name!r} preset needs a tokenizer (e.g. Mistral-7B-Instruct's)")
            from divot.llm.text_tokenizer import build_shapes_tokenizer

            tokenizer = build_shapes_tokenizer(vocab_size=config.base.vocab_size)
        base_vocab = len(tokenizer)
        return cls.from_llm(config.base.to_hf(vocab_size=base_vocab), tokenizer, config)

    @staticmethod
    def presets() -> list[str]:
        return sorted(LLM_PRESETS)

    # -- saving / loading ---------------------------------------------------------------------------------
    def projections(self) -> nn.ModuleDict:
        """The Divot-owned modules (what ``model.safetensors`` holds)."""
        return nn.ModuleDict({"input_proj": self.input_proj, "gmm_head": self.gmm_head})

    def state_dict_for_saving(self) -> dict[str, torch.Tensor]:
        return self.projections().state_dict()

    def save_pretrained(self, directory: str | Path) -> Path:
        if self.tokenizer is None:
            raise ValueError("save_pretrained needs the tokenizer: build the model with one")
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.llm.save_pretrained(directory / LLM_SUBDIR)
        save_text_tokenizer(self.tokenizer, directory / LLM_SUBDIR)
        save_state_dict(self.state_dict_for_saving(), directory / WEIGHTS_NAME)
        payload = {"model_type": self.model_type, **config_to_dict(self.config)}
        atomic_write_text(directory / CONFIG_NAME, json.dumps(payload, indent=2) + "\n")
        logger.info("saved DivotLLM to %s", directory)
        return directory

    @classmethod
    def load_config(cls, directory: str | Path) -> DivotLLMConfig:
        """The saved config; one saved before ``sequence_format`` existed was trained on the "pieces" encoding."""
        config_path = Path(directory) / CONFIG_NAME
        saved = json.loads(config_path.read_text()) if config_path.is_file() else {}
        config = super().load_config(directory)
        if "sequence_format" not in saved:
            logger.info("%s has no sequence_format: using 'pieces', the encoding it was trained with", config_path)
            config.sequence_format = "pieces"
        return config

    @classmethod
    def from_pretrained(cls, directory: str | Path, device: str | torch.device | None = None,
                        dtype: torch.dtype | None = None, device_map: str | dict | None = None,
                        quantization: str | None = None, *, max_memory: dict | None = None,
                        offload_folder: str | Path | None = None) -> DivotLLM:
        """Load a saved directory strictly (LLM keys, projection keys and shapes all checked).

        ``device`` puts the whole model on one device. ``device_map`` ("auto", "balanced", a dict of module
        names -> devices / "cpu" / "disk"; with ``max_memory`` and ``offload_folder``) spreads an LLM larger
        than one device through accelerate. ``quantization`` ("8bit", "4bit" NF4; the ``quant`` extra) loads
        the LLM's linear layers through bitsandbytes; the output embedding, the projections and the GMM head
        stay unquantized. ``dtype`` defaults to float32 (float16 with "8bit", bfloat16 with "4bit"). A
        quantized or dispatched LLM stays where it was loaded (``to`` moves only the projections); the input
        projection sits on the input embeddings' device, the GMM head on the last hidden states' device."""
        from transformers import AutoTokenizer

        if device is not None and device_map is not None:
            raise ValueError(f"give device or device_map, not both (got {device!r} and {device_map!r})")
        if quantization is not None and device is not None:
            device_map = {"": str(torch.device(device))}  # bitsandbytes quantizes while loading onto the device
        directory = Path(directory)
        config = cls.load_config(directory)
        weights = directory / WEIGHTS_NAME
        if not weights.is_file():
            raise FileNotFoundError(f"DivotLLM.from_pretrained: no {WEIGHTS_NAME} in {directory}")
        llm = load_hf_llm_strict(directory / LLM_SUBDIR, dtype, device_map=device_map, quantization=quantization,
                                 max_memory=max_memory, offload_folder=offload_folder)
        tokenizer = AutoTokenizer.from_pretrained(str(directory / LLM_SUBDIR))
        from accelerate import init_empty_weights

        from divot.weights_io import cast_floating, load_safetensors

        with init_empty_weights(include_buffers=False):  # the projections: no random initialisation, one copy
            model = cls(config, llm, tokenizer)
        projections = load_safetensors(weights, cast_floating(dtype if dtype is not None else model.dtype))
        load_state_dict_strict(model.projections(), projections, str(weights), assign=True)
        if is_placed(llm):
            model.place_projections(dtype)
        elif device is not None or dtype is not None:
            model.to(device=device, dtype=dtype)
        return model

    def place_projections(self, dtype: torch.dtype | None = None) -> None:
        """Put the input projection beside the input embeddings and the GMM head beside the last hidden states
        (both in ``dtype``, default the LLM's embedding dtype); for an LLM placed by ``device_map``."""
        dtype = dtype or self.dtype
        self.input_proj.to(device=self.device, dtype=dtype)
        self.gmm_head.to(device=last_hidden_device(self.llm), dtype=dtype)

    def _apply(self, fn, recurse: bool = True):
        # ``to`` / ``half`` / ``cuda`` (also through a parent module such as ``Divot``): a quantized or dispatched
        # LLM must not be moved or cast (bitsandbytes raises; accelerate's hooks would point at stale devices),
        # so only the projections follow.
        if not (recurse and is_placed(self.llm)):
            return super()._apply(fn, recurse)
        logger.debug("the LLM is quantized or dispatched: it stays where it was loaded; moving the projections")
        for module in (self.input_proj, self.gmm_head):
            module._apply(fn)
        return self

    # -- forward ------------------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        """Where input ids and embeddings go: the input embeddings' execution device (with a ``device_map``
        their weights may sit on "meta", offloaded to the CPU or disk)."""
        return execution_device(self.llm.get_input_embeddings())

    @property
    def dtype(self) -> torch.dtype:
        return self.llm.get_input_embeddings().weight.dtype

    def embed(self, input_ids: torch.Tensor, cmp_mask: torch.Tensor | None = None,
              cmp_clips: torch.Tensor | None = None) -> torch.Tensor:
        """Token embeddings (b, s, h) with the projected clip tokens (n, q, d) at the ``cmp_mask`` positions.

        The number of marked positions must equal n x q (clips in order of appearance, row-major)."""
        embeds = self.llm.get_input_embeddings()(input_ids)  # (b, s, h)
        q = self.config.num_queries
        n_pos = int(cmp_mask.sum()) if cmp_mask is not None else 0
        n_clips = cmp_clips.shape[0] if cmp_clips is not None else 0
        if n_pos != n_clips * q:
            raise ValueError(f"{n_pos} comprehension frame-token positions but {n_clips} clip(s) x {q} queries "
                             f"= {n_clips * q} clip tokens")
        if n_pos == 0:
            return embeds
        if tuple(cmp_clips.shape[1:]) != (q, self.config.token_dim):
            raise ValueError(f"clip tokens must be (n, {q}, {self.config.token_dim}), got {tuple(cmp_clips.shape)}")
        weight = self.input_proj[0].weight
        feats = self.input_proj(cmp_clips.to(device=weight.device, dtype=weight.dtype))  # (n, q, h)
        feats = feats.to(device=embeds.device, dtype=embeds.dtype)
        return embeds.masked_scatter(cmp_mask.to(embeds.device)[..., None], feats.reshape(-1, feats.shape[-1]))

    def decoder_forward(self, embeds: torch.Tensor, attention_mask: torch.Tensor, use_cache: bool = False):
        """The LLM's decoder (no LM head) on embeddings (b, s, h) with an additive mask (b, 1, s, s) or a padding
        mask (b, s) (``masks.llm_mask``): the last hidden states after the final norm (b, s, h) and the KV
        cache (None without ``use_cache``).

        Only the final layer's states are kept (asking the causal LM for ``output_hidden_states`` would hold
        every layer's at once: 33 x (b, s, 4096) at Mistral-7B). LoRA-wrapped LLMs run their base model, whose
        layers carry the adapters."""
        mask = llm_mask(attention_mask.to(embeds.device), embeds.dtype)
        base = self.llm.get_base_model() if hasattr(self.llm, "get_base_model") else self.llm
        out = base.get_decoder()(inputs_embeds=embeds, attention_mask=mask, use_cache=use_cache)
        cache = None
        if use_cache:
            cache = out.cache if getattr(out, "cache", None) is not None else out.past_key_values
        return out.last_hidden_state, cache

    def lm_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Next-token logits (..., V) from final hidden states (..., h): the LLM's output embedding."""
        base = self.llm.get_base_model() if hasattr(self.llm, "get_base_model") else self.llm
        return base.get_output_embeddings()(hidden)

    def hidden_and_logits(self, embeds: torch.Tensor, attention_mask: torch.Tensor):
        """Run the LLM on embeddings (b, s, h) with an additive mask (b, 1, s, s) or a padding mask (b, s).

        Returns the last hidden states after the final norm (b, s, h) and the logits (b, s, V)."""
        if _logit_softcap(self.llm) is not None:  # e.g. Gemma-2: the causal LM scales its logits itself
            mask = llm_mask(attention_mask.to(embeds.device), embeds.dtype)
            out = self.llm(inputs_embeds=embeds, attention_mask=mask, output_hidden_states=True, use_cache=False)
            return out.hidden_states[-1], out.logits
        hidden, _ = self.decoder_forward(embeds, attention_mask)
        return hidden, self.lm_logits(hidden)

    def forward(self, batch: dict[str, torch.Tensor], label_smoothing: float = 0.0) -> dict[str, torch.Tensor]:
        """A collated batch (``LLMCollator``) -> ``{"loss", "lm_loss", "gmm_loss"}`` (float32 scalars);
        ``label_smoothing`` smooths the next-token targets (training only; 0 is plain cross-entropy).

        A batch without generation queries runs on its padding mask (b, s) (the LLM builds the causal mask:
        cheaper, and flash / SDPA kernels can run); ``attention_mask_4d`` is used when a row has queries."""
        input_ids = batch["input_ids"]
        device = input_ids.device
        gen_mask = batch.get("gen_mask")
        embeds = self.embed(input_ids, batch.get("cmp_mask"), batch.get("cmp_clips"))
        attn = batch.get("attention_mask")
        mask = batch.get("attention_mask_4d")
        if not has_queries(gen_mask) and (attn is not None or mask is None):
            mask = attn if attn is not None else torch.ones_like(input_ids)  # (b, s): causal + padding
        elif mask is None:
            attn = attn if attn is not None else torch.ones_like(input_ids)
            mask = build_attention_mask_4d(attn, gen_mask, self.config.num_queries)  # (b, 1, s, s)
        hidden, logits = self.hidden_and_logits(embeds, mask)
        lm_loss = causal_lm_loss(logits, batch["labels"].to(device), label_smoothing)
        gmm_loss = self.gmm_loss(hidden, gen_mask, batch.get("gen_clips"))
        loss = self.config.lm_loss_weight * lm_loss + self.config.gmm_loss_weight * gmm_loss
        return {"loss": loss, "lm_loss": lm_loss, "gmm_loss": gmm_loss}

    def gmm_loss(self, hidden: torch.Tensor, gen_mask: torch.Tensor | None,
                 gen_clips: torch.Tensor | None) -> torch.Tensor:
        """GMM NLL / d of the target clips (n, q, d) at the query positions; 0 when there are none."""
        q, d = self.config.num_queries, self.config.token_dim
        n_pos = int(gen_mask.sum()) if gen_mask is not None else 0
        n_clips = gen_clips.shape[0] if gen_clips is not None else 0
        if n_pos != n_clips * q:
            raise ValueError(f"{n_pos} generation query positions but {n_clips} target clip(s) x {q} queries "
                             f"= {n_clips * q} clip tokens")
        if n_pos == 0:
            return hidden.new_zeros((), dtype=torch.float32)
        queries = hidden[gen_mask.to(hidden.device)]  # (n*q, h)
        targets = gen_clips.to(hidden.device).reshape(-1, d)  # (n*q, d)
        return self.gmm_head.nll(queries, targets)


def _logit_softcap(llm):
    config = getattr(llm, "config", None)
    return getattr(config, "final_logit_softcapping", None)


def causal_lm_loss(logits: torch.Tensor, labels: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """Mean next-token cross-entropy (float32) over labels != IGNORE_INDEX; 0 if there are none. With
    ``label_smoothing`` e the target is (1 - e) on the label and e spread evenly over the vocabulary."""
    shift_logits = logits[:, :-1].float()  # (b, s-1, V)
    shift_labels = labels[:, 1:]  # (b, s-1)
    if not (shift_labels != IGNORE_INDEX).any():
        return logits.new_zeros((), dtype=torch.float32)
    return F.cross_entropy(shift_logits.reshape(-1, shift_logits.shape[-1]), shift_labels.reshape(-1),
                           ignore_index=IGNORE_INDEX, label_smoothing=label_smoothing)


def load_hf_llm_strict(directory: str | Path, dtype: torch.dtype | None = torch.float32, device_map=None,
                       quantization: str | None = None, max_memory: dict | None = None,
                       offload_folder: str | Path | None = None) -> nn.Module:
    """``AutoModelForCausalLM.from_pretrained`` that raises on missing, unexpected or mis-shaped weights.

    ``device_map``, ``quantization``, ``max_memory`` and ``offload_folder``: see ``divot.llm.loading``;
    ``dtype`` None is float32, or ``loading.QUANTIZED_DTYPES[quantization]``."""
    from transformers import AutoConfig, AutoModelForCausalLM

    directory = Path(directory)
    if not (directory / CONFIG_NAME).is_file():
        raise FileNotFoundError(f"no Hugging Face model in {directory} (config.json missing)")
    kwargs = llm_load_kwargs(AutoConfig.from_pretrained(str(directory)) if quantization else None, dtype,
                             device_map, quantization, max_memory, offload_folder)
    llm, info = AutoModelForCausalLM.from_pretrained(str(directory), output_loading_info=True, **kwargs)
    check_keys(sorted(info.get("missing_keys", ())), sorted(info.get("unexpected_keys", ())), str(directory))
    mismatched = info.get("mismatched_keys") or ()
    if mismatched:
        raise ValueError(f"{directory}: shape mismatch for {len(mismatched)} tensor(s): {sorted(mismatched)[:10]}")
    return llm.eval()
