"""Run config of Divot-LLM training: stages ``pretrain``, ``sft_comp``, ``sft_gen`` and ``story`` (DESIGN
sections 6 and 10).

One schema for every stage: a weighted mixture of data sources (annotations + a token cache each), which
projections are frozen, LoRA or full fine-tuning, the optimiser and schedule, the DeepSpeed setup, evaluation.
YAML files under ``configs/llm/`` fill it; ``key.sub=value`` overrides on the command line.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from divot.training.optim import OptimConfig

STAGES = ("pretrain", "sft_comp", "sft_gen", "story")
KINDS = ("caption", "generation", "qa", "image", "story")
FORMATS = ("caption", "generation", "generation_instruction", "qa", "image", "story")
FREEZABLE = ("input_proj", "gmm_head", "llm")
# What each stage freezes unless ``freeze`` says otherwise: SFT-comprehension keeps the output projection
# (the GMM head) fixed, SFT-generation the input projection; story fine-tuning generates every clip, so the
# input projection gets no gradient there either.
STAGE_FREEZE = {"pretrain": (), "sft_comp": ("gmm_head",), "sft_gen": ("input_proj",), "story": ("input_proj",)}
PRECISIONS = ("auto", "fp32", "bf16")


@dataclass
class SourceConfig:
    """One data source of the mixture.

    ``annotations``: a shapes-world ``metadata.jsonl`` (id, caption, attributes), an EgoSchema-format
    ``questions.json`` (q_uid, question, option 0..4; the answers in ``answers``), an MSVD-QA ``qa.json``
    (video_name, question, answer) or any JSON / JSONL records with an id (``id`` / ``video_id`` / ``q_uid`` /
    ``video_name``) and ``caption`` or ``question`` + ``answer``; for ``kind: story`` a story JSONL (DESIGN
    section 10, ``divot.data.stories``). ``tokens``: the token cache of those videos (of a story file: its
    segments, ``divot cache-features --videos stories.jsonl``).
    """

    kind: str = "caption"  # caption | generation | qa | image | story
    annotations: str = ""
    tokens: str = ""
    weight: float = 1.0  # relative sampling weight inside the mixture
    answers: str | None = None  # EgoSchema subset_answers.json (q_uid -> index of the correct option)
    split: str | None = None  # keep only records with this "split"
    format: str | None = None  # sequence format; default: from the kind and the stage (see ``sequence_format``)
    name: str | None = None  # shown in the logs; default: kind + file name

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"data source kind must be one of {KINDS}, got {self.kind!r}")
        if self.format is not None and self.format not in FORMATS:
            raise ValueError(f"data source format must be one of {FORMATS}, got {self.format!r}")
        if not self.annotations or not self.tokens:
            raise ValueError(f"a {self.kind} data source needs 'annotations' (a file) and 'tokens' (a token cache)")
        if not self.weight > 0:
            raise ValueError(f"data source weight must be > 0, got {self.weight}")

        if (self.kind == "story") != (self.sequence_format("pretrain") == "story"):
            raise ValueError(f"a {self.kind} data source cannot use the {self.format} format (stories and only "
                             "stories use the story format)")

    def sequence_format(self, stage: str) -> str:
        """The sequence builder used: captions and images always pretrain-style, QA the instruction format,
        generation the plain format in pretraining and the instruction format (with a template) in SFT."""
        if self.format is not None:
            return self.format
        if self.kind == "generation":
            return "generation" if stage == "pretrain" else "generation_instruction"
        return self.kind


@dataclass
class LLMDataConfig:
    sources: list[SourceConfig] = field(default_factory=list)
    batch_size: int = 8  # samples per process per micro-batch
    max_clips: int = 20  # clips per video kept (the first ones)
    max_length: int | None = 4096  # longer sequences are an error (the caption / question is too long)
    num_workers: int = 0


@dataclass
class LoRAConfig:
    """peft LoRA on the LLM (reference: r 32, alpha 32, dropout 0.05 on every linear layer of the LLM)."""

    enabled: bool = False  # False: full fine-tuning of the LLM
    r: int = 32
    alpha: int = 32
    dropout: float = 0.05
    target_modules: list[str] = field(default_factory=lambda: [
        "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    modules_to_save: list[str] = field(default_factory=lambda: [
        "input_layernorm", "post_attention_layernorm", "norm"])  # trained fully, saved with the adapter
    train_fully: list[str] = field(default_factory=lambda: ["embed_tokens", "lm_head"])  # trained in place


@dataclass
class DeepSpeedConfig:
    """DeepSpeed ZeRO; used whenever the launcher starts more than one process, or with ``enabled``."""

    enabled: bool = False  # also on a single process (e.g. to use ZeRO-Offload on one GPU)
    stage: int = 2  # 2 or 3
    offload_optimizer: bool = False  # optimiser state on the CPU (DeepSpeedCPUAdam)
    offload_param: bool = False  # ZeRO-3 only: parameters on the CPU
    config_file: str | None = None  # a DeepSpeed JSON merged over the built "zero_optimization" section

    def __post_init__(self):
        if self.stage not in (2, 3):
            raise ValueError(f"deepspeed.stage must be 2 or 3, got {self.stage}")
        if self.offload_param and self.stage != 3:
            raise ValueError("deepspeed.offload_param needs deepspeed.stage=3")


@dataclass
class LLMEvalConfig:
    """Held-out evaluation: caption accuracy by attribute, GMM NLL of generation targets, multiple choice."""

    every: int = 500  # optimiser steps between evaluations (0: only at the end)
    at_start: bool = False  # also evaluate the starting model (step 0; not when resuming)
    annotations: str | None = None  # held-out metadata.jsonl (captions + attributes); None: no evaluation
    tokens: str | None = None  # the token cache of those videos
    num_caption: int = 64  # clips captioned (greedy decoding) for the attribute accuracies
    num_gmm: int = 64  # clips whose tokens are scored by the GMM head
    caption_question: str | None = None  # None: the pretraining caption prompt; else a QA prompt with it
    max_new_tokens: int = 24
    questions: str | None = None  # EgoSchema-format questions.json of the held-out clips
    answers: str | None = None  # its subset_answers.json
    num_mc: int = 64  # multiple-choice questions scored by option log-likelihood
    stories: str | None = None  # held-out story JSONL: LM loss of the texts and GMM NLL of the clips (story row)
    story_tokens: str | None = None  # the token cache of its segments
    num_stories: int = 64
    batch_size: int = 16

    @property
    def enabled(self) -> bool:
        return bool(self.annotations or self.stories)


def reference_optim() -> OptimConfig:
    """The reference scripts' optimiser: AdamW lr 1e-4, betas (0.9, 0.98), eps 1e-6, wd 0.05, clip 1.0,
    cosine to 5 % with 500 warm-up steps over 100k steps."""
    return OptimConfig(lr=1e-4, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.05, warmup_steps=500,
                       max_steps=100_000, min_lr_ratio=0.05, grad_clip=1.0)


@dataclass
class LLMTrainConfig:
    stage: str = "pretrain"
    model: str = "tiny"  # a Divot-LLM preset (fresh projections) or a DivotLLM directory (save_pretrained)
    llm: str | None = None  # preset only: the base HF LLM (directory / hub name), e.g. Mistral-7B-Instruct
    tokenizer: str | None = None  # preset only: the text tokenizer (default: the llm's; tiny: the shapes one)
    output_dir: str = "runs/llm"
    data: LLMDataConfig = field(default_factory=LLMDataConfig)
    optim: OptimConfig = field(default_factory=reference_optim)
    lora: LoRAConfig = field(default_factory=LoRAConfig)
    deepspeed: DeepSpeedConfig = field(default_factory=DeepSpeedConfig)
    freeze: list[str] | None = None  # parts kept fixed (input_proj, gmm_head, llm); None: the stage's default
    eval: LLMEvalConfig = field(default_factory=LLMEvalConfig)
    precision: str = "auto"  # auto (bf16 autocast on CUDA with bf16, else fp32), fp32, bf16
    # Next-token targets (1 - e) on the label, e over the vocabulary; 0 (the paper): plain cross-entropy.
    # Training only (the logged lm_loss includes it; evaluation losses do not). Shapes world: 0.1 lifts
    # held-out multiple choice, not the captions' colour-word prior (docs/experiments.md, 2026-12-02, 7d9ef82).
    label_smoothing: float = 0.0
    # Word dropout (divot.training.word_dropout): the fraction of the labelled text tokens replaced by the
    # unknown token in the input (labels kept). 0 (the paper): none.
    word_dropout: float = 0.0
    gradient_checkpointing: bool = False
    log_every: int = 10
    checkpoint_every: int = 1000
    keep_checkpoints: int = 3
    resume: str | None = "auto"  # "auto": continue from output_dir/checkpoints/latest if present; or a folder
    seed: int = 0
    device: str | None = None  # default: cuda if available, else cpu
    max_minutes: float = 0.0  # stop cleanly (checkpoint + export) after this much wall time; 0: no limit

    def __post_init__(self):
        if self.stage not in STAGES:
            raise ValueError(f"stage must be one of {STAGES}, got {self.stage!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if not 0.0 <= self.word_dropout < 1.0:
            raise ValueError(f"word_dropout must be in [0, 1), got {self.word_dropout}")
        if not self.data.sources:
            raise ValueError("data.sources is empty: give at least one source (kind, annotations, tokens, weight)")
        if self.data.batch_size < 1 or self.data.max_clips < 1:
            raise ValueError(f"data.batch_size and data.max_clips must be >= 1, got {self.data.batch_size}, "
                             f"{self.data.max_clips}")
        bad = [f for f in self.frozen if f not in FREEZABLE]
        if bad:
            raise ValueError(f"freeze: unknown part(s) {bad}; choose from {FREEZABLE}")
        if self.lora.enabled and "llm" in self.frozen:
            raise ValueError("freeze contains 'llm' but lora.enabled is true: LoRA trains the LLM")
        if self.eval.stories and not self.eval.story_tokens:
            raise ValueError("eval.stories needs eval.story_tokens (the token cache of those stories' segments)")
        if self.eval.annotations and not self.eval.tokens:
            raise ValueError("eval.annotations needs eval.tokens (the token cache of those held-out clips)")
        if bool(self.eval.questions) != bool(self.eval.answers):
            raise ValueError("eval.questions and eval.answers go together (EgoSchema questions.json + answers)")

    @property
    def frozen(self) -> tuple[str, ...]:
        return tuple(self.freeze) if self.freeze is not None else STAGE_FREEZE[self.stage]
