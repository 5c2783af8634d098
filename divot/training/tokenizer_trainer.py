"""The tokenizer / de-tokenizer training loop (stages T1, T2, T3), single process or DeepSpeed ZeRO-2.

Run folder (``output_dir``)::

    config.yaml                 the resolved run config
    metrics.jsonl               step, loss, lr, grad norm, clips/s, skipped videos (every ``log_every`` steps)
    eval.jsonl                  loss gap own/empty tokens, reconstruction measurements, probes (per evaluation)
    samples/step-XXXXXXXX.gif   real | reconstruction from own tokens | from the empty context, one row per clip
    checkpoints/                atomic, resumable (divot.training.checkpoint)
    tokenizer/, detokenizer/    the exported models (EMA weights), loadable with from_pretrained
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from divot.config import config_to_dict, save_yaml
from divot.data.datasets import ClipDataset, ResumableSampler, collate_clips, read_annotations
from divot.data.token_files import TokenClipDataset, read_token_file
from divot.diffusion.detokenizer import Detokenizer
from divot.diffusion.objective import DenoisingObjective
from divot.tokenizer.model import VideoTokenizer
from divot.training.checkpoint import CheckpointManager, resolve_resume, rng_state, set_rng_state
from divot.training.ema import EMA
from divot.training.engine import (
    DeepSpeedEngine,
    TorchEngine,
    all_reduce_mean,
    barrier,
    init_distributed,
    pick_device,
    world_info,
)
from divot.training.tokenizer_config import TokenizerTrainConfig
from divot.training.tokenizer_eval_loop import Evaluator
from divot.training.tokenizer_model import TokenizerDiffusionModel, trainable_named_parameters

logger = logging.getLogger(__name__)


def build_models(cfg: TokenizerTrainConfig) -> tuple[VideoTokenizer | None, Detokenizer]:
    tokenizer = (VideoTokenizer.from_pretrained_or_preset(cfg.tokenizer, warn_random=False)
                 if cfg.stage != "T3" or cfg.tokenizer else None)
    detok = Detokenizer.from_pretrained_or_preset(cfg.detokenizer, warn_random=False)
    if tokenizer is not None:
        tc, dc = tokenizer.config, detok.config
        if (tc.num_tokens, tc.token_dim) != (dc.num_tokens, dc.token_dim) or tc.frame_size != dc.frame_size:
            raise ValueError(f"tokenizer gives {tc.num_tokens} x {tc.token_dim} tokens of {tc.frame_size} px "
                             f"clips; the de-tokenizer expects {dc.num_tokens} x {dc.token_dim} at {dc.frame_size} px")
        if cfg.stage != "T1":
            tokenizer.requires_grad_(False).eval()
            detok.set_unconditional_tokens(tokenizer)  # the frozen tokenizer defines the empty context
    return tokenizer, detok


def build_dataset(cfg: TokenizerTrainConfig, frame_size: int):
    if cfg.stage == "T3":
        return TokenClipDataset(read_token_file(cfg.data.token_file), frame_size)
    items = read_annotations(cfg.data.train, cfg.data.video_root, cfg.data.train_split)
    return ClipDataset(items, frame_size, seed=cfg.seed, random_window=True, channel_shuffle=cfg.data.channel_shuffle)


def train_tokenizer(cfg: TokenizerTrainConfig) -> dict:
    """Run (or resume) a training stage; returns the last evaluation (``{}`` on non-main processes)."""
    rank, world, local_rank = world_info()
    distributed = world > 1 or cfg.deepspeed is not None
    if distributed:
        init_distributed()
    is_main = rank == 0
    device = pick_device(cfg.device, local_rank)
    out = Path(cfg.output_dir)
    if is_main:
        out.mkdir(parents=True, exist_ok=True)
        save_yaml(cfg, out / "config.yaml")
    torch.manual_seed(cfg.seed * 1000 + rank)

    tokenizer, detok = build_models(cfg)
    frame_size = detok.config.frame_size
    objective = DenoisingObjective(detok.config.schedule, cfg.loss)
    model = TokenizerDiffusionModel(cfg.stage, tokenizer, detok, objective, cfg.cond_dropout, cfg.precision,
                                    cfg.layout.weight, cfg.layout.size, cfg.layout.grid_weight,
                                    cfg.layout.shape_weight, cfg.layout.shape_size)
    model.to(device)
    # Data first: a missing file fails here, before any collective operation.
    dataset = build_dataset(cfg, frame_size)
    sampler = ResumableSampler(len(dataset), seed=cfg.seed, rank=rank, world_size=world)
    loader_kwargs = dict(batch_size=cfg.data.batch_size, sampler=sampler, collate_fn=collate_clips,
                         num_workers=cfg.data.num_workers, drop_last=False,
                         generator=torch.Generator().manual_seed(cfg.seed))  # not the global RNG: exact resume
    evaluator = Evaluator(cfg, model, device, out) if is_main else None
    named = trainable_named_parameters(model, cfg.train_condition)
    logger.info("stage %s: training %.2fM parameters on %s x %d process(es)", cfg.stage,
                sum(p.numel() for _, p in named) / 1e6, device, world)
    lr_scales = {"tokenizer.": cfg.tokenizer_lr_scale}
    if distributed:
        extra = json.loads(Path(cfg.deepspeed).read_text()) if cfg.deepspeed else None
        engine = DeepSpeedEngine(model, named, cfg.optim, cfg.data.batch_size, extra, lr_scales)
    else:
        engine = TorchEngine(model, named, cfg.optim, lr_scales)
    ema = EMA(named, cfg.ema_decay) if cfg.ema_decay > 0 else None


    manager = CheckpointManager(out / "checkpoints", cfg.keep_checkpoints)
    state = {"step": 0, "epoch": 0, "offset": 0, "skipped": 0, "clips": 0}
    resume_from = resolve_resume(cfg.resume, manager)
    if resume_from is not None:
        state = _load_checkpoint(resume_from, model, engine, ema, rank, world)
        logger.info("resumed from %s at step %d", resume_from, state["step"])

    start, last_eval = time.time(), {}
    log_t, log_clips = time.time(), state["clips"]
    losses: list[float] = []
    aux_losses: dict[str, list[float]] = {}  # the layout terms alone (cfg.layout), logged beside the total
    pbar = tqdm(total=cfg.optim.max_steps, initial=state["step"], desc=f"train {cfg.stage}", disable=not is_main)
    model.train()
    stop = state["step"] >= cfg.optim.max_steps
    while not stop:
        sampler.set_position(state["epoch"], state["offset"])
        dataset.set_epoch(state["epoch"])
        for batch in DataLoader(dataset, **loader_kwargs):
            state["offset"] += batch["num_items"]
            state["skipped"] += batch["num_skipped"]
            if "dense" not in batch:
                continue  # every video of this micro-batch was unreadable
            result = engine(batch)
            loss = result["loss"]
            engine.backward(loss)
            losses.append(float(loss.detach()))
            for key in ("layout_loss", "grid_loss", "shape_loss"):
                if key in result:
                    aux_losses.setdefault(key, []).append(float(result[key]))
            state["clips"] += batch["dense"].shape[0]
            stepped, grad_norm = engine.step()
            if not stepped:
                continue
            state["step"] += 1
            step = state["step"]
            if ema is not None:
                ema.update()
            pbar.update(1)
            if step % cfg.log_every == 0 or step == cfg.optim.max_steps:
                mean_loss = all_reduce_mean(sum(losses) / len(losses), device)
                now = time.time()
                record = {"step": step, "loss": mean_loss, "lr": engine.lr, "grad_norm": grad_norm,
                          "clips_per_s": (state["clips"] - log_clips) * world / max(now - log_t, 1e-9),
                          "skipped_videos": state["skipped"], "epoch": state["epoch"]}
                for key, values in aux_losses.items():
                    record[key] = all_reduce_mean(sum(values) / len(values), device)
                log_t, log_clips, losses, aux_losses = now, state["clips"], [], {}
                if is_main:
                    pbar.set_postfix(loss=f"{mean_loss:.4f}", lr=f"{engine.lr:.2e}")
                    _append_jsonl(out / "metrics.jsonl", record)
            out_of_time = cfg.max_minutes > 0 and (time.time() - start) / 60 >= cfg.max_minutes
            stop = step >= cfg.optim.max_steps or out_of_time
            if cfg.eval.every and step % cfg.eval.every == 0 and not stop:
                last_eval = _evaluate(evaluator, ema, step)
            if (cfg.checkpoint_every and step % cfg.checkpoint_every == 0) or stop:
                _save_checkpoint(manager, step, state, cfg, model, engine, ema, rank, world)
            if stop:
                break
        else:
            state["epoch"] += 1
            state["offset"] = 0
    pbar.close()
    last_eval = _evaluate(evaluator, ema, state["step"]) or last_eval
    if is_main:
        _export(out, model, ema)
    barrier()
    if state["skipped"]:
        logger.warning("%d unreadable video(s) were skipped", state["skipped"])
    return last_eval


def _append_jsonl(path: Path, record: dict) -> None:
    with path.open("a") as f:
        f.write(json.dumps(record) + "\n")


def _evaluate(evaluator, ema: EMA | None, step: int) -> dict:
    result = {}
    if evaluator is not None:
        if ema is not None:
            with ema.applied():
                result = evaluator.run(step)
        else:
            result = evaluator.run(step)
    barrier()
    return result


def _save_checkpoint(manager, step, state, cfg, model, engine, ema, rank, world) -> None:
    if rank == 0:
        folder = manager.prepare(step)
    barrier()
    folder = manager.staging_dir(step)
    extra = engine.save(folder, rank == 0)
    torch.save(rng_state(), folder / f"rng-rank{rank}.pt")
    barrier()
    if rank == 0:
        payload = {"state": dict(state), "world_size": world, "config": config_to_dict(cfg),
                   "ema": ema.state_dict() if ema is not None else None, **extra}
        if not engine.is_deepspeed:
            payload["model"] = model.state_dict()
        torch.save(payload, folder / "trainer.pt")
        manager.finalize(step)
    barrier()


def _load_checkpoint(folder: Path, model, engine, ema, rank: int, world: int) -> dict:
    payload = torch.load(folder / "trainer.pt", map_location="cpu", weights_only=False)
    if payload["world_size"] != world:
        raise ValueError(f"{folder} was written by {payload['world_size']} process(es); resuming on {world} "
                         "would change the data order (start a new run from its exported models instead)")
    if not engine.is_deepspeed:
        model.load_state_dict(payload["model"])
    engine.load(folder, payload)
    if ema is not None and payload["ema"] is not None:
        ema.load_state_dict(payload["ema"])
    rng_file = folder / f"rng-rank{rank}.pt"
    if rng_file.is_file():
        set_rng_state(torch.load(rng_file, weights_only=False))
    return dict(payload["state"])


def _export(out: Path, model: TokenizerDiffusionModel, ema: EMA | None) -> None:
    """Save the EMA weights as loadable models; the unconditional tokens come from the final tokenizer."""
    def save():
        detok = model.detokenizer
        if model.tokenizer is not None:
            detok.set_unconditional_tokens(model.tokenizer)
            if model.stage == "T1":
                model.tokenizer.save_pretrained(out / "tokenizer")
        detok.save_pretrained(out / "detokenizer")

    if ema is not None:
        with ema.applied():
            save()
    else:
        save()
