"""The Divot-LLM training loop (pretrain, sft_comp, sft_gen, story): one process, or DeepSpeed ZeRO-2 / ZeRO-3.

Run folder (``output_dir``)::

    config.yaml       the resolved run config
    metrics.jsonl     step, loss, lm_loss, gmm_loss, lr, grad norm, tokens/s, samples, epoch (every log_every)
    eval.jsonl        held-out caption accuracy by attribute, GMM NLL, caption LM loss, multiple choice, story losses
    checkpoints/      atomic, resumable (model incl. LoRA, optimiser, schedule, RNG, data position)
    model/            the final model, LoRA merged: ``DivotLLM.from_pretrained(output_dir / "model")``
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from pathlib import Path

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from divot.config import config_to_dict, save_yaml
from divot.llm import LLM_PRESETS, LLMCollator, SequenceBuilder
from divot.training.checkpoint import CheckpointManager, resolve_resume, rng_state, set_rng_state
from divot.training.engine import (
    DeepSpeedEngine,
    TorchEngine,
    barrier,
    deepspeed_config,
    init_distributed,
    pick_device,
    world_info,
)
from divot.training.llm_config import LLMTrainConfig
from divot.training.llm_data import MixtureDataset, RankBatches, SampleBuilder, TokenSource
from divot.training.llm_eval import LLMEvaluator
from divot.training.llm_model import build_model, export_model, prepare_for_training
from divot.training.word_dropout import drop_target_words
from divot.training.zero import gathered, master_weights, partitioned_build, swapped_data

logger = logging.getLogger(__name__)


def deepspeed_extra(cfg: LLMTrainConfig) -> dict:
    """The DeepSpeed JSON of the run. ``deepspeed.config_file`` (if any) tunes buckets and communication; the
    ZeRO stage is always ``deepspeed.stage``, the offload flags add CPU offload (the file may add it too);
    batch sizes, accumulation, clipping and the optimiser come from the run config (``deepspeed_config``)."""
    ds = cfg.deepspeed
    extra: dict = {}
    if ds.config_file:
        path = Path(ds.config_file)
        if not path.is_file():
            raise FileNotFoundError(f"deepspeed.config_file not found: {path}")
        extra = json.loads(path.read_text())
    zero = {"overlap_comm": False, "contiguous_gradients": True, **extra.get("zero_optimization", {})}
    zero["stage"] = ds.stage
    pin = torch.cuda.is_available()
    if ds.offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": pin}
    if ds.offload_param:
        zero["offload_param"] = {"device": "cpu", "pin_memory": pin}
    if zero.get("offload_param") and ds.stage != 3:
        raise ValueError("offload_param in the DeepSpeed JSON needs deepspeed.stage=3")
    return {**extra, "zero_optimization": zero}


def resolve_precision(precision: str, device: torch.device) -> str:
    if precision == "auto":
        return "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
    return precision


def _sum_all(values: list[float], device: torch.device) -> list[float]:
    if not (dist.is_available() and dist.is_initialized()):
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def _append_jsonl(path: Path, record: dict) -> None:
    with path.open("a") as f:
        f.write(json.dumps(record) + "\n")


class _Meter:
    """Sums of the micro-batch losses since the last log line."""

    def __init__(self):
        self.reset()

    def reset(self):
        self.n = self.loss = self.lm = self.gmm = self.n_gmm = self.tokens = 0.0
        self.t = time.time()

    def add(self, out: dict, batch: dict) -> None:
        self.n += 1
        self.loss += float(out["loss"].detach())
        self.lm += float(out["lm_loss"].detach())
        if int(batch["num_gen_clips"].sum()):
            self.gmm += float(out["gmm_loss"].detach())
            self.n_gmm += 1
        self.tokens += float(batch["attention_mask"].sum())


def train_llm(cfg: LLMTrainConfig) -> dict:
    """Run (or resume) a stage; returns the last evaluation (``{}`` on other processes or without eval data)."""
    rank, world, local_rank = world_info()
    use_deepspeed = world > 1 or cfg.deepspeed.enabled
    if use_deepspeed:
        init_distributed()
    is_main = rank == 0
    device = pick_device(cfg.device, local_rank)
    precision = resolve_precision(cfg.precision, device)
    out = Path(cfg.output_dir)
    if is_main:
        out.mkdir(parents=True, exist_ok=True)
        save_yaml(cfg, out / "config.yaml")

    batch_size = cfg.data.batch_size
    # Under DeepSpeed, "bf16" is DeepSpeed's bf16 mode (bfloat16 weights, float32 master weights in the
    # optimiser; divot/training/engine.py); on one process it is bfloat16 autocast over float32 weights.
    ds_bf16 = use_deepspeed and precision == "bf16"
    ds_config = deepspeed_config(cfg.optim, batch_size, world, deepspeed_extra(cfg), ds_bf16) if use_deepspeed else {}
    zero3 = use_deepspeed and cfg.deepspeed.stage == 3
    hf_ds_config = None  # kept alive for the run: transformers acts ZeRO-3-aware while it exists
    if zero3 and cfg.model in LLM_PRESETS:  # built partitioned: no process holds the whole model
        with partitioned_build(ds_config) as hf_ds_config:
            model = build_model(cfg)
    else:
        if zero3:
            logger.info("ZeRO-3: the saved DivotLLM %s is built whole on each process, then partitioned", cfg.model)
        model = build_model(cfg)
    named = prepare_for_training(model, cfg)
    q, d = model.config.num_queries, model.config.token_dim
    # Data before any collective operation: a missing file fails here, on every rank.
    builder = SequenceBuilder.from_config(model.tokenizer, model.config, cfg.data.max_length)
    caches: dict = {}
    sources = [TokenSource(s, cfg.stage, caches) for s in cfg.data.sources]
    for source in sources:
        if tuple(source.cache.token_shape) != (q, d):
            raise ValueError(f"{source.name}: the token cache {source.cfg.tokens} holds {source.cache.token_shape} "
                             f"tokens per clip; the model takes ({q}, {d})")
    dataset = MixtureDataset(sources, SampleBuilder(builder, cfg.data.max_clips), cfg.seed, batch_size,
                             round_size=world * cfg.optim.grad_accum)
    collator = LLMCollator(builder.ids.pad, q)
    keep = [builder.ids.bos, builder.ids.eos, builder.ids.vid_start, builder.ids.vid_end, *builder.ids.placeholders()]
    logger.info("data: %s; %d samples per epoch", ", ".join(f"{s.name} ({len(s)}, {s.format}, weight "
                                                             f"{s.cfg.weight:g})" for s in sources), len(dataset))
    if hf_ds_config is None:
        model.to(device)

    def autocast():
        if precision == "bf16" and not ds_bf16:
            return torch.autocast(device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    evaluator = None
    if cfg.eval.enabled and (is_main or zero3):  # ZeRO-3: every rank takes part in each forward
        evaluator = LLMEvaluator(cfg, model, builder, device, autocast, out if is_main else None, caches)
    if use_deepspeed:
        engine = DeepSpeedEngine(model, named, cfg.optim, batch_size, deepspeed_extra(cfg), bf16=ds_bf16)
    else:
        engine = TorchEngine(model, named, cfg.optim, zero_unused_grads=True)
    torch.manual_seed(cfg.seed * 1000 + rank)  # dropout (LoRA) differs between ranks

    manager = CheckpointManager(out / "checkpoints", cfg.keep_checkpoints)
    state = {"step": 0, "micro_batches": 0, "samples": 0, "tokens": 0}
    resume_from = resolve_resume(cfg.resume, manager)
    if resume_from is not None:
        state = _load_checkpoint(resume_from, model, engine, rank, world)
        logger.info("resumed from %s at step %d", resume_from, state["step"])

    def evaluate(step):
        result = evaluator.run(step) if evaluator is not None else {}
        barrier()
        return result

    if cfg.eval.at_start and state["step"] == 0:
        evaluate(0)
    start, last_eval, meter = time.time(), {}, _Meter()
    pbar = tqdm(total=cfg.optim.max_steps, initial=state["step"], desc=f"train {cfg.stage}", disable=not is_main)
    model.train()
    stop = state["step"] >= cfg.optim.max_steps
    loader = DataLoader(dataset, batch_sampler=RankBatches(batch_size, rank, world, state["micro_batches"]),
                        collate_fn=collator, num_workers=cfg.data.num_workers,
                        generator=torch.Generator().manual_seed(cfg.seed))  # not the global RNG: exact resume
    for batch in loader if not stop else ():
        state["micro_batches"] += world
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        if cfg.word_dropout:
            batch["input_ids"] = drop_target_words(batch["input_ids"], batch["labels"], cfg.word_dropout,
                                                   builder.ids.pad, keep, seed=cfg.seed * 1_000_003 + state["micro_batches"] + rank)
        with autocast():
            out_ = engine(batch, label_smoothing=cfg.label_smoothing)
        engine.backward(out_["loss"])
        meter.add(out_, batch)
        stepped, grad_norm = engine.step()
        if not stepped:
            continue
        state["step"] += 1
        step = state["step"]
        pbar.update(1)
        if step % cfg.log_every == 0 or step == cfg.optim.max_steps:
            n, loss, lm, gmm, n_gmm, tokens = _sum_all([meter.n, meter.loss, meter.lm, meter.gmm, meter.n_gmm,
                                                        meter.tokens], device)
            elapsed = max(time.time() - meter.t, 1e-9)
            state["samples"] = state["micro_batches"] * batch_size
            state["tokens"] += int(tokens)
            record = {"step": step, "loss": loss / n, "lm_loss": lm / n, "gmm_loss": gmm / n_gmm if n_gmm else None,
                      "lr": engine.lr, "grad_norm": grad_norm, "tokens_per_s": tokens / elapsed,
                      "samples": state["samples"], "tokens": state["tokens"],
                      "epoch": state["samples"] / len(dataset)}
            meter.reset()
            if is_main:
                pbar.set_postfix(loss=f"{record['loss']:.4f}", lr=f"{engine.lr:.2e}", tok_s=f"{tokens / elapsed:.0f}")
                _append_jsonl(out / "metrics.jsonl", record)
        out_of_time = cfg.max_minutes > 0 and (time.time() - start) / 60 >= cfg.max_minutes
        stop = step >= cfg.optim.max_steps or out_of_time
        paused = time.time()
        if cfg.eval.every and step % cfg.eval.every == 0 and not stop:
            last_eval = evaluate(step)
        if (cfg.checkpoint_every and step % cfg.checkpoint_every == 0) or stop:
            _save_checkpoint(manager, step, state, cfg, model, engine, rank, world)
        meter.t += time.time() - paused  # tokens/s counts training time only
        if stop:
            break
    pbar.close()
    last_eval = evaluate(state["step"]) or last_eval
    _export(out / "model", model, engine, is_main)
    return last_eval if is_main else {}


def _save_checkpoint(manager, step, state, cfg, model, engine, rank, world) -> None:
    if rank == 0:
        manager.prepare(step)
    barrier()
    folder = manager.staging_dir(step)
    extra = engine.save(folder, rank == 0)
    torch.save(rng_state(), folder / f"rng-rank{rank}.pt")
    barrier()
    if rank == 0:
        payload = {"kind": "divot-llm", "state": dict(state), "world_size": world,
                   "config": config_to_dict(cfg), **extra}
        if not engine.is_deepspeed:
            payload["model"] = model.state_dict()
        torch.save(payload, folder / "trainer.pt")
        manager.finalize(step)
    barrier()


def _load_checkpoint(folder: Path, model, engine, rank: int, world: int) -> dict:
    payload = torch.load(folder / "trainer.pt", map_location="cpu", weights_only=False)
    if payload.get("kind") != "divot-llm":
        raise ValueError(f"{folder} is not a Divot-LLM training checkpoint")
    if payload["world_size"] != world and engine.is_deepspeed:
        raise ValueError(f"{folder} was written by {payload['world_size']} DeepSpeed process(es); resuming on "
                         f"{world} needs a new run from its exported model")
    if not engine.is_deepspeed:
        model.load_state_dict(payload["model"], strict=True)
    engine.load(folder, payload)
    rng_file = folder / f"rng-rank{rank}.pt"
    if rng_file.is_file():
        set_rng_state(torch.load(rng_file, weights_only=False))
    return dict(payload["state"])


def _export(path: Path, model, engine, is_main: bool) -> None:
    """Merged model directory in float32 (DeepSpeed bf16: the optimiser's master weights); ZeRO-3 gathers the
    parameters (on every rank) before rank 0 writes."""
    params = list(model.parameters())
    masters = master_weights(params, keep=is_main) if getattr(engine, "bf16", False) else None
    with gathered(params):
        if is_main:
            with swapped_data(params, masters) if masters is not None else contextlib.nullcontext():
                export_model(model, path)
    barrier()
