"""De-tokenizer configs: the 3D U-Net, the condition resampler, the noise schedule and the VAE.

Presets are code (``unet_preset("paper")``); the ``*_from_reference`` functions translate the reference
(DynamiCrafter / Divot yaml) argument dicts into these dataclasses and reject switches we do not implement.
The full layer-by-layer description of the U-Net is in ``DETOKENIZER.md``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

# The de-tokenizer's samplers: the published DDIM ("reference") and the diffusers schedulers of
# ``divot.diffusion.schedule.SCHEDULERS`` (one factory per name; a test keeps the two equal). Named here, where
# neither torch nor diffusers is imported, so that generation defaults and CLI options can be checked cheaply.
SAMPLERS = ("reference", "ddim", "ddpm", "dpmsolver++", "euler", "unipc")


@dataclass
class UNetConfig:
    """The DynamiCrafter 3D U-Net (v-prediction on (b, c, t, h, w) latents).

    Reference names in brackets: ``model_channels``, ``channel_mult``, ``num_res_blocks``,
    ``attention_resolutions`` (downsampling factors 1, 2, 4, ... at which attention is used),
    ``head_dim`` [num_head_channels], ``num_frames`` [temporal_length], ``init_attention`` [addition_attention],
    ``image_gate_learnable`` [image_cross_attention_scale_learnable].
    """

    in_channels: int = 4
    out_channels: int = 4
    model_channels: int = 320
    channel_mult: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2
    attention_resolutions: tuple[int, ...] = (4, 2, 1)
    head_dim: int = 64
    context_dim: int = 1024
    transformer_depth: int = 1
    dropout: float = 0.1  # ResBlock dropout (the reference builds it; inactive in eval)
    temporal_conv_dropout: float = 0.1  # hard-coded in the reference's TemporalConvBlock
    use_linear: bool = True  # Linear (not 1x1 conv) projections in the spatial / in-block temporal transformers
    temporal_conv: bool = True
    temporal_attention: bool = True
    init_attention: bool = True  # the extra temporal transformer right after the stem conv (``init_attn``)
    init_attention_heads: int = 8
    image_cross_attention: bool = True  # second key/value branch for context tokens after text_context_len
    image_gate_learnable: bool = True  # branch scaled by tanh(alpha) + 1 with a learned scalar alpha
    text_context_len: int = 77
    fs_condition: bool = True
    default_fs: int = 3
    num_frames: int = 16  # the training clip length (documentation: any frame count runs)
    gradient_checkpointing: bool = False  # recompute block activations in the backward pass (training)
    # Learned position tables (t, h, w) added after the stem conv; () = none (the released structure). The
    # reference U-Net has no position information at all: convolutions and attention are translation- and
    # frame-equivariant, so at high noise a small U-Net cannot tell where (or in which frame) to draw what the
    # context describes. A tiny-preset training aid (DESIGN section 9).
    position_grid: tuple[int, ...] = ()
    # Also add an MLP of the mean context token to the timestep embedding (every ResBlock sees it), as
    # class-conditional U-Nets do: global attributes (colour, shape, kind of motion) condition at once, while
    # cross-attention learns the spatial detail. Off in the released structure; a tiny-preset training aid.
    pooled_context: bool = False
    # (context tokens, grid side, channels): a linear map from all context tokens to a (frames, channels,
    # grid, grid) feature map added after the stem (``ContextGrid``), so the tokens can say where and when
    # to draw directly; () = none (the released structure). A tiny-preset training aid.
    context_grid: tuple[int, ...] = ()

    def __post_init__(self):
        self.channel_mult = tuple(self.channel_mult)
        self.attention_resolutions = tuple(self.attention_resolutions)
        self.position_grid = tuple(self.position_grid)
        self.context_grid = tuple(self.context_grid)
        if self.context_grid and (len(self.context_grid) != 3 or min(self.context_grid) < 1):
            raise ValueError(f"context_grid must be () or (context tokens, grid side, channels), got "
                             f"{self.context_grid}")
        if self.position_grid and (len(self.position_grid) != 3 or min(self.position_grid) < 1):
            raise ValueError(f"position_grid must be () or (frames, height, width), got {self.position_grid}")
        if not self.channel_mult:
            raise ValueError("channel_mult must name at least one level")
        for ch in self.level_channels:
            if ch % 32:
                raise ValueError(f"every level width must be a multiple of 32 (GroupNorm groups), got {ch}")
            if ch % self.head_dim:
                raise ValueError(f"level width {ch} is not a multiple of head_dim {self.head_dim}")
        if self.num_res_blocks < 1:
            raise ValueError(f"num_res_blocks must be >= 1, got {self.num_res_blocks}")

    @property
    def time_embed_dim(self) -> int:
        return 4 * self.model_channels

    @property
    def level_channels(self) -> tuple[int, ...]:
        return tuple(m * self.model_channels for m in self.channel_mult)

    @property
    def num_levels(self) -> int:
        return len(self.channel_mult)

    @property
    def downsample_factor(self) -> int:
        """Spatial reduction of the deepest level (latent side must be a multiple of it)."""
        return 2 ** (self.num_levels - 1)

    def num_heads(self, channels: int) -> int:
        return channels // self.head_dim


@dataclass
class ConditionResamplerConfig:
    """Perceiver resampler turning tokenizer tokens (b, n, input_dim) into the U-Net context (b, q, output_dim)."""

    dim: int = 1024
    depth: int = 6
    num_heads: int = 16
    head_dim: int = 64
    num_queries: int = 125
    input_dim: int = 256
    output_dim: int = 1024
    ff_mult: int = 4


PREDICTION_TYPES = ("v_prediction", "epsilon", "sample")


@dataclass
class ScheduleConfig:
    """Training noise schedule: betas linear in sqrt space, rescaled to zero terminal SNR, v-prediction."""

    num_train_timesteps: int = 1000
    beta_start: float = 0.00085
    beta_end: float = 0.012
    rescale_zero_terminal_snr: bool = True
    # What the U-Net outputs: "v_prediction" (the released de-tokenizer), "epsilon", or "sample" (x_0; a
    # tiny-preset option: a small U-Net outputs a clean image far sooner than a t-dependent noise gain, and the
    # x_0 loss weights the high noise levels where only the tokens tell what to draw). Samplers run on v: a
    # "sample" U-Net is converted by ``Detokenizer.denoise``.
    prediction_type: str = "v_prediction"

    def __post_init__(self):
        if self.prediction_type not in PREDICTION_TYPES:
            raise ValueError(f"prediction_type must be one of {PREDICTION_TYPES}, got {self.prediction_type!r}")
        if not 0 < self.beta_start < self.beta_end < 1:
            raise ValueError(f"need 0 < beta_start < beta_end < 1, got {self.beta_start}, {self.beta_end}")


@dataclass
class VAEConfig:
    """The Stable Diffusion KL autoencoder (LDM ``ddconfig`` names), built as ``diffusers.AutoencoderKL``."""

    in_channels: int = 3
    out_channels: int = 3
    ch: int = 128
    ch_mult: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2
    z_channels: int = 4
    resolution: int = 256
    scale_factor: float = 0.18215

    def __post_init__(self):
        self.ch_mult = tuple(self.ch_mult)

    @property
    def block_out_channels(self) -> tuple[int, ...]:
        return tuple(self.ch * m for m in self.ch_mult)

    @property
    def downsample_factor(self) -> int:
        return 2 ** (len(self.ch_mult) - 1)


UNET_PRESETS: dict[str, UNetConfig] = {
    # The released Divot de-tokenizer: 1532 tensors, 1,438,843,476 parameters.
    "paper": UNetConfig(),
    # The golden miniature (tests): same switches, 32 channels, two levels.
    "tiny": UNetConfig(model_channels=32, channel_mult=(1, 2), num_res_blocks=1, attention_resolutions=(1, 2),
                       head_dim=16, context_dim=64, dropout=0.0),
}

CONDITION_PRESETS: dict[str, ConditionResamplerConfig] = {
    "paper": ConditionResamplerConfig(),
    "tiny": ConditionResamplerConfig(dim=64, depth=1, num_heads=4, head_dim=16, num_queries=125, input_dim=32,
                                     output_dim=64),
}

VAE_PRESETS: dict[str, VAEConfig] = {
    "paper": VAEConfig(),  # Stable Diffusion's VAE (8x down, 4 latent channels)
    "tiny": VAEConfig(ch=32, ch_mult=(1, 2), num_res_blocks=1, resolution=32),
}


def _preset(presets: dict, kind: str, name: str):
    if name not in presets:
        raise ValueError(f"unknown {kind} preset {name!r}; choose from {sorted(presets)}")
    return copy.deepcopy(presets[name])


def unet_preset(name: str) -> UNetConfig:
    return _preset(UNET_PRESETS, "U-Net", name)


def condition_preset(name: str) -> ConditionResamplerConfig:
    return _preset(CONDITION_PRESETS, "condition resampler", name)


def vae_preset(name: str) -> VAEConfig:
    return _preset(VAE_PRESETS, "VAE", name)


# Reference switches we reproduce only in one setting: (name, required value).
_FIXED_REFERENCE_SWITCHES = {
    "temporal_selfatt_only": True,
    "use_relative_position": False,
    "use_causal_attention": False,
    "use_scale_shift_norm": False,
    "resblock_updown": False,
    "conv_resample": True,
    "dims": 2,
    "tempspatial_aware": False,
}
# No effect on the weights or the maths here: checkpointing is our own switch, the compute dtype is the caller's,
# num_heads is overridden by num_head_channels in the reference.
_IGNORED_REFERENCE_KEYS = {"use_checkpoint", "image_size", "legacy", "num_heads", "num_heads_upsample", "use_fp16"}


def unet_config_from_reference(args: dict) -> UNetConfig:
    """A ``UNetConfig`` from the reference ``UNetModel`` arguments (the yaml ``unet_config.params`` dict)."""
    a = dict(args)
    rename = {
        "in_channels": "in_channels", "out_channels": "out_channels", "model_channels": "model_channels",
        "channel_mult": "channel_mult", "num_res_blocks": "num_res_blocks",
        "attention_resolutions": "attention_resolutions", "num_head_channels": "head_dim",
        "context_dim": "context_dim", "transformer_depth": "transformer_depth", "dropout": "dropout",
        "use_linear": "use_linear", "temporal_conv": "temporal_conv", "temporal_attention": "temporal_attention",
        "addition_attention": "init_attention", "image_cross_attention": "image_cross_attention",
        "image_cross_attention_scale_learnable": "image_gate_learnable", "temporal_length": "num_frames",
        "default_fs": "default_fs", "fs_condition": "fs_condition",
    }
    kwargs = {}
    for key, value in a.items():
        if key in rename:
            kwargs[rename[key]] = value
        elif key in _FIXED_REFERENCE_SWITCHES:
            if value != _FIXED_REFERENCE_SWITCHES[key]:
                raise ValueError(f"reference U-Net option {key}={value!r} is not supported "
                                 f"(only {_FIXED_REFERENCE_SWITCHES[key]!r})")
        elif key not in _IGNORED_REFERENCE_KEYS:
            raise ValueError(f"unknown reference U-Net argument {key!r}")
    if kwargs.get("head_dim", 64) == -1:
        raise ValueError("num_head_channels=-1 (a fixed head count) is not supported: set num_head_channels")
    if not isinstance(kwargs.get("transformer_depth", 1), int):
        raise ValueError("per-level transformer_depth lists are not supported")
    return UNetConfig(**kwargs)


def condition_config_from_reference(args: dict) -> ConditionResamplerConfig:
    """A ``ConditionResamplerConfig`` from the reference ``Resampler_DC`` arguments."""
    rename = {"dim": "dim", "depth": "depth", "dim_head": "head_dim", "heads": "num_heads",
              "num_queries": "num_queries", "embedding_dim": "input_dim", "output_dim": "output_dim",
              "ff_mult": "ff_mult"}
    unknown = sorted(set(args) - set(rename))
    if unknown:
        raise ValueError(f"unknown reference resampler argument(s): {unknown}")
    return ConditionResamplerConfig(**{rename[k]: v for k, v in args.items()})


def vae_config_from_reference(ddconfig: dict, scale_factor: float = 0.18215) -> VAEConfig:
    """A ``VAEConfig`` from an LDM ``ddconfig`` (the SD VAE layout: attention only in the middle blocks)."""
    d = dict(ddconfig)
    if d.get("attn_resolutions"):
        raise ValueError(f"attention at resolutions {d['attn_resolutions']} is not supported "
                         "(diffusers' AutoencoderKL has attention in the middle block only)")
    if not d.get("double_z", True):
        raise ValueError("double_z=False is not a KL autoencoder")
    known = {"double_z", "z_channels", "resolution", "in_channels", "out_ch", "ch", "ch_mult", "num_res_blocks",
             "attn_resolutions", "dropout"}
    unknown = sorted(set(d) - known)
    if unknown:
        raise ValueError(f"unknown ddconfig key(s): {unknown}")
    return VAEConfig(in_channels=d.get("in_channels", 3), out_channels=d.get("out_ch", 3), ch=d["ch"],
                     ch_mult=tuple(d["ch_mult"]), num_res_blocks=d["num_res_blocks"],
                     z_channels=d.get("z_channels", 4), resolution=d.get("resolution", 256),
                     scale_factor=scale_factor)
