"""Run config of tokenizer / de-tokenizer training (stages T1, T2, T3 of DESIGN section 5).

YAML files under ``configs/tokenizer/`` fill this dataclass; ``key.sub=value`` overrides on the command line.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from divot.diffusion.objective import LossConfig
from divot.training.optim import OptimConfig

STAGES = ("T1", "T2", "T3")


@dataclass
class DataConfig:
    train: str = ""  # a folder of videos, or a .jsonl / .json / .csv annotation file
    train_split: str | None = None  # keep only records with this "split" (e.g. "train" in the shapes world)
    val: str | None = None  # default: the training source
    val_split: str | None = None
    video_root: str | None = None  # where relative video paths point (default: the annotation file's folder)
    token_file: str | None = None  # T3: rows of tokens from the LLM (divot.data.token_files)
    batch_size: int = 8  # per process, per micro-batch
    num_workers: int = 0
    channel_shuffle: bool = False  # augmentation: a random RGB channel order per training clip (T1 / T2)


@dataclass
class EvalConfig:
    every: int = 500  # optimiser steps between evaluations (0: only at the end)
    num_val: int = 16  # validation clips for the loss gap and the reconstructions
    num_samples: int = 4  # clips shown in each reconstruction GIF
    sampler: str = "dpmsolver++"
    sample_steps: int = 20
    guidance_scale: float = 1.0  # T1 trains without condition dropout: no guidance until T2
    probe: bool = True  # linear probe of the tokens against the clips' attribute labels (if any)
    num_probe_train: int = 256


@dataclass
class LayoutConfig:
    """T1 training aid for sparse scenes (tiny presets): a linear head reads the clip's coarse layout back.

    ``weight`` > 0 adds ``weight`` x the (foreground-weighted) squared error of Linear(all tokens of a clip)
    against its sparse frames average-pooled to ``size`` x ``size``. Self-supervised (no labels): it makes the
    tokens keep where the object is in every frame, which the denoising loss alone lets the resampler drop.
    The head exists only during training; exported models are unchanged.

    ``grid_weight`` > 0 does the same for the de-tokenizer's context grid (``UNetConfig.context_grid``): its
    first three channels are asked for the rendered frames pooled to the grid size, so the U-Net's stem is
    handed a coarse picture of where the object is in every frame instead of having to discover it.

    ``shape_weight`` > 0 adds a second linear head that reads each sparse frame's foreground silhouette, cut
    out by its square bounding box and resampled to ``shape_size`` x ``shape_size``
    (``layout_targets.centred_masks``). The silhouette has neither colour, place nor size, so the tokens must
    keep shape in a form a linear read-out finds whatever the colour: what lets shape carry over to
    colour-shape pairs absent from the training clips. Also self-supervised and dropped at export.
    """

    weight: float = 0.0
    size: int = 8
    grid_weight: float = 0.0
    shape_weight: float = 0.0
    shape_size: int = 12

    def __post_init__(self):
        if self.weight < 0 or self.size < 1 or self.grid_weight < 0 or self.shape_weight < 0 or self.shape_size < 2:
            raise ValueError(f"layout needs weights >= 0, size >= 1 and shape_size >= 2, got {self}")


@dataclass
class TokenizerTrainConfig:
    stage: str = "T1"
    tokenizer: str = "tiny"  # a preset name (random init) or a directory from save_pretrained
    detokenizer: str = "tiny"
    output_dir: str = "runs/tokenizer"
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    layout: LayoutConfig = field(default_factory=LayoutConfig)  # T1 only
    cond_dropout: float = 0.0  # T2/T3: probability of replacing a clip's context by the unconditional one
    tokenizer_lr_scale: float = 1.0  # T1: the tokenizer learns at optim.lr * this
    train_condition: bool = True  # T2/T3: also train the condition resampler (else the U-Net alone)
    precision: str = "fp32"  # "fp32" or "bf16" (autocast, float32 weights and optimiser state)
    ema_decay: float = 0.999  # 0 disables the EMA; exported models carry the EMA weights
    log_every: int = 10
    checkpoint_every: int = 500
    keep_checkpoints: int = 3
    resume: str | None = "auto"  # "auto": continue from output_dir/checkpoints/latest if present; or a folder
    seed: int = 0
    device: str | None = None  # default: cuda if available, else cpu
    deepspeed: str | None = None  # a DeepSpeed JSON (ZeRO settings); multi-process runs use ZeRO-2 anyway
    max_minutes: float = 0.0  # stop cleanly (checkpoint + export) after this much wall time; 0: no limit

    def __post_init__(self):
        if self.stage not in STAGES:
            raise ValueError(f"stage must be one of {STAGES}, got {self.stage!r}")
        if self.precision not in ("fp32", "bf16"):
            raise ValueError(f"precision must be 'fp32' or 'bf16', got {self.precision!r}")
        if not 0.0 <= self.cond_dropout < 1.0:
            raise ValueError(f"cond_dropout must be in [0, 1), got {self.cond_dropout}")
        if self.stage == "T1" and self.cond_dropout:
            raise ValueError("stage T1 trains without condition dropout (DESIGN section 5); use T2")
        if self.stage != "T1" and (self.layout.weight or self.layout.grid_weight or self.layout.shape_weight):
            raise ValueError("layout.weight / grid_weight / shape_weight train the tokenizer: they apply to "
                             "stage T1 only")
        if self.stage == "T3" and self.data.channel_shuffle:
            raise ValueError("data.channel_shuffle reorders the colours of training videos; stage T3 trains "
                             "on the LLM's tokens, whose clips it cannot change")
        if self.stage == "T3" and not self.data.token_file:
            raise ValueError("stage T3 needs data.token_file (tokens written by the LLM's generation path)")
        if self.stage != "T3" and not self.data.train:
            raise ValueError("data.train must name a folder of videos or an annotation file")
