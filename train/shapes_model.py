"""Train the bundled shapes-world model (``divot/assets/shapes-tiny``) from scratch with the project's own code.

    python train/shapes_model.py --out divot/assets/shapes-tiny            # the bundled model (~85 min, 2 cores)
    python train/shapes_model.py --out runs/shapes-quick/model --quick     # what ``divot demo --train`` runs

Stages (every one is a stock entry point of this repository, called with its shapes-world config):
  1. data      ``divot data shapes``: training clips and held-out clips (held-out colour-shape pairs)
  2. T1        ``train/tokenizer.py`` t1_shapes_tiny.yaml: tokenizer + de-tokenizer under the denoising loss
  2b. T1 colours  ``train/tokenizer.py`` t1_shapes_tiny_colours.yaml from the T1 result: channel-shuffled clips
               and a stronger silhouette term, so the tokens carry shape apart from colour (skipped at 0 steps)
  3. T2        ``train/tokenizer.py`` t2_shapes_tiny.yaml: de-tokenizer with condition dropout (guidance)
  3b. T2 more  ``train/tokenizer.py`` t2_shapes_tiny_more.yaml from the T2 result: the de-tokenizer goes on at
               half the learning rate, which renders vertical motion more often (skipped at 0 steps)
  4. tokens    ``build_token_cache`` of both splits with the final T1 tokenizer
  5. LLM       ``train/llm.py`` pretrain_shapes_tiny.yaml: captions, generation (instruction format), QA
  6. stories   story files (train pairs; held-out pairs for evaluation), their segments' token cache, then
               ``train/story.py`` configs/story/shapes_tiny.yaml: LoRA story fine-tuning of the LLM of stage 5
  7. assemble  ``tokenizer/``, ``llm/``, ``detokenizer/``, ``story_llm/`` + ``training.json`` (steps, evaluations)
               + ``generation.json``: the settings ``divot demo`` renders with (``SHAPES_DEMO``: DPM-Solver++ 20
               steps, guidance 3.0), the model's defaults for ``divot generate`` / ``story`` and ``generate_video``

Each stage's run folder lives under ``--work``; a rerun resumes where it stopped (finished stages are skipped,
interrupted ones resume from their checkpoints).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: the repository's train/ package
    sys.path.insert(0, str(ROOT))

from divot.chat.generation_defaults import SHAPES_DEMO  # noqa: E402
from divot.data.shapes.generate import generate_dataset  # noqa: E402
from divot.data.token_cache import build_token_cache  # noqa: E402
from divot.hub import atomic_write_text  # noqa: E402
from divot.tokenizer import VideoTokenizer  # noqa: E402
from train import llm as train_llm  # noqa: E402
from train import story as train_story  # noqa: E402
from train import tokenizer as train_tokenizer  # noqa: E402

logger = logging.getLogger("train.shapes_model")
CONFIGS = ROOT / "configs"

# (full, quick): sizes and steps of each stage
SETTINGS = {
    "num_train": (2000, 800),
    "num_held_out": (200, 100),
    "t1_steps": (1000, 400),
    "t1_colour_steps": (600, 0),
    "t2_steps": (1500, 100),
    "t2_more_steps": (1500, 0),
    "llm_steps": (8000, 2000),
    "num_stories": (1000, 300),
    "num_held_out_stories": (64, 32),
    "story_steps": (600, 300),
}


def _jsonl_last(path: Path) -> dict:
    lines = [line for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
    return json.loads(lines[-1]) if lines else {}


class StageLog:
    """Each stage's command, config, steps and wall time, kept in ``work/stages.json`` so that a resumed build
    still reports the minutes of stages finished by an earlier invocation (their ``runs`` count says so)."""

    def __init__(self, path: Path):
        self.path = path
        self.stages: dict[str, dict] = json.loads(path.read_text()) if path.exists() else {}

    def run(self, name: str, fn, argv: list[str], steps: int | None = None) -> None:
        """Run one stage (``fn(argv)``, a stock entry point), timing it."""
        logger.info("stage %s: %s", name, " ".join(argv))
        entry = self.stages.setdefault(name, {"minutes": 0.0, "runs": 0})
        config = argv[argv.index("--config") + 1] if "--config" in argv else None
        entry.update(config=_relative(config) if config else None, steps=steps,
                     overrides=[a for a in argv if "=" in a and not a.startswith("--")])
        start = time.time()
        code = fn(argv)
        entry["minutes"] = round(entry["minutes"] + (time.time() - start) / 60, 2)
        entry["runs"] += 1
        self._save()
        if code != 0:
            raise RuntimeError(f"stage {name} failed (exit code {code})")

    def time(self, name: str, fn, **info) -> None:
        """Time a stage that is a library call (data, token caches), not an entry point."""
        entry = self.stages.setdefault(name, {"minutes": 0.0, "runs": 0})
        entry.update(info)
        start = time.time()
        fn()
        entry["minutes"] = round(entry["minutes"] + (time.time() - start) / 60, 2)
        entry["runs"] += 1
        self._save()

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.path, json.dumps(self.stages, indent=1) + "\n")


def _relative(path: str) -> str:
    try:
        return str(Path(path).resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def _git_commit() -> dict:
    """The commit the code was built from, and whether tracked files differed from it."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    try:
        return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "dirty": None}


def _machine() -> dict:
    import torch

    cpu = platform.processor()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                 if line.startswith("model name")]
        cpu = names[0] if names else cpu
    return {"platform": platform.platform(), "cpu": cpu, "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "python": platform.python_version(),
            "torch": torch.__version__, "cuda": torch.cuda.is_available()}


def _finished(run: Path) -> bool:
    """A tokenizer-training run is finished once its de-tokenizer export is complete: ``train/tokenizer.py``
    writes it after the tokenizer, and ``save_pretrained`` writes ``config.json`` after the weights."""
    return (run / "detokenizer" / "config.json").exists()


def _second_phase(log: StageLog, name: str, config: str, run: Path, tokenizer_run: Path, detokenizer_run: Path,
                  steps: int, extra: list[str]) -> Path:
    """A phase that continues earlier runs' exported models (``tokenizer_run``'s tokenizer, ``detokenizer_run``'s
    U-Net) with ``configs/tokenizer/{config}``; returns ``run``, or ``detokenizer_run`` when ``steps`` is 0
    (the phase is skipped)."""
    if steps <= 0:
        return detokenizer_run
    if not _finished(run):
        log.run(name, train_tokenizer.main, [
            "--config", str(CONFIGS / "tokenizer" / config), *extra, f"output_dir={run}",
            f"tokenizer={tokenizer_run / 'tokenizer'}", f"detokenizer={detokenizer_run / 'detokenizer'}",
            f"optim.max_steps={steps}", "checkpoint_every=100"], steps=steps)
    return run


def build(out: Path, work: Path, quick: bool = False, seed: int = 0, minutes: float = 0.0,
          command: str | None = None) -> dict:
    """Run every stage into ``work`` and assemble the model into ``out``; returns the training record.

    ``command`` is the command line recorded in ``training.json`` (default: the equivalent
    ``python train/shapes_model.py`` call)."""
    pick = {k: v[1] if quick else v[0] for k, v in SETTINGS.items()}
    start, git = time.time(), _git_commit()  # the code as it was when the build started
    log = StageLog(work / "stages.json")
    data = work / "data"
    train_dir, held_dir = data / "train", data / "held_out"
    if not (train_dir / "summary.json").exists():
        log.time("data train", lambda: generate_dataset(train_dir, num=pick["num_train"], seed=seed, num_stories=0),
                 clips=pick["num_train"], seed=seed)
    if not (held_dir / "summary.json").exists():
        log.time("data held_out", lambda: generate_dataset(held_dir, num=pick["num_held_out"], seed=seed + 1,
                                                           held_out=True, num_stories=0),
                 clips=pick["num_held_out"], seed=seed + 1, held_out=True)

    data_args = [f"data.train={train_dir / 'metadata.jsonl'}", f"data.val={held_dir / 'metadata.jsonl'}"]
    t1, t2 = work / "t1", work / "t2"
    t1_minutes = f"max_minutes={minutes * 0.6:.1f}" if minutes else "max_minutes=0"
    if not _finished(t1):
        log.run("T1", train_tokenizer.main, ["--config", str(CONFIGS / "tokenizer" / "t1_shapes_tiny.yaml"), *data_args,
                                             f"output_dir={t1}", f"optim.max_steps={pick['t1_steps']}", t1_minutes,
                                             f"seed={seed}", "eval.every=500", "checkpoint_every=100"],
                steps=pick["t1_steps"])
    # the run whose models T2, the token caches and the bundle take
    t1_final = _second_phase(log, "T1 colours", "t1_shapes_tiny_colours.yaml", work / "t1_colours", t1, t1,
                             pick["t1_colour_steps"], [*data_args, f"seed={seed}"])
    if not _finished(t2):
        log.run("T2", train_tokenizer.main, ["--config", str(CONFIGS / "tokenizer" / "t2_shapes_tiny.yaml"), *data_args,
                                             f"output_dir={t2}", f"tokenizer={t1_final / 'tokenizer'}",
                                             f"detokenizer={t1_final / 'detokenizer'}",
                                             f"optim.max_steps={pick['t2_steps']}", f"seed={seed}", "eval.every=0",
                                             "checkpoint_every=100", "eval.probe=false", "eval.guidance_scale=3.0"],
                steps=pick["t2_steps"])
    # the run whose de-tokenizer the bundle takes
    t2_final = _second_phase(log, "T2 more", "t2_shapes_tiny_more.yaml", work / "t2_more", t1_final, t2,
                             pick["t2_more_steps"], [*data_args, f"seed={seed}"])

    tokenizer = VideoTokenizer.from_pretrained(t1_final / "tokenizer").eval()
    caches = {}
    for split, folder in (("train", train_dir), ("held_out", held_dir)):
        caches[split] = work / f"{split}_tokens"
        log.time(f"tokens {split}", partial(build_token_cache, tokenizer, folder / "metadata.jsonl", caches[split],
                                            batch_size=32))

    llm_run = work / "llm"
    if not (llm_run / "model" / "config.json").exists():
        log.run("LLM", train_llm.main, ["--config", str(CONFIGS / "llm" / "pretrain_shapes_tiny.yaml"),
                                        f"output_dir={llm_run}", f"optim.max_steps={pick['llm_steps']}",
                                        f"seed={seed}", _sources(train_dir, caches["train"]),
                                        *_llm_eval(held_dir, caches["held_out"]), "eval.every=1000",
                                        "checkpoint_every=500"],
                steps=pick["llm_steps"])

    story_run = _stories(log, work, llm_run / "model", tokenizer, pick, seed)

    staged = out.with_name(out.name + ".tmp")
    shutil.rmtree(staged, ignore_errors=True)
    shutil.copytree(t1_final / "tokenizer", staged / "tokenizer")
    shutil.copytree(t2_final / "detokenizer", staged / "detokenizer")
    shutil.copytree(llm_run / "model", staged / "llm")
    shutil.copytree(story_run / "model", staged / "story_llm")
    record = {
        "command": command or ("python train/shapes_model.py" + (" --quick" if quick else "") + f" --seed {seed}"),
        "git": git, "machine": _machine(), "quick": quick, "seed": seed, "settings": pick,
        # every stage's config, overrides, steps and wall time, this invocation and any earlier one it resumed
        "stages": log.stages,
        "minutes_total": round(sum(stage["minutes"] for stage in log.stages.values()), 1),
        "minutes_this_run": round((time.time() - start) / 60, 1),
        "resumed": any(stage["runs"] > 1 for stage in log.stages.values()) or len(log.stages) < _num_stages(pick),
        "t1_eval": _jsonl_last(t1 / "eval.jsonl"),
        "t1_colours_eval": _jsonl_last(t1_final / "eval.jsonl") if t1_final != t1 else {},
        "t2_eval": _jsonl_last(t2 / "eval.jsonl"),
        "t2_more_eval": _jsonl_last(t2_final / "eval.jsonl") if t2_final != t2 else {},
        "llm_eval": _jsonl_last(llm_run / "eval.jsonl"), "story_eval": _jsonl_last(story_run / "eval.jsonl"),
    }
    atomic_write_text(staged / "training.json", json.dumps(record, indent=1) + "\n")
    SHAPES_DEMO.save_pretrained(staged)  # generation.json: what the demo's numbers are rendered with
    shutil.rmtree(out, ignore_errors=True)
    staged.rename(out)  # the finished model appears at once
    logger.info("model written to %s (%.1f min)", out, record["minutes_this_run"])
    return record


def _num_stages(pick: dict) -> int:
    """How many stages a build from nothing logs: data x2, T1, T2, tokens x2, LLM, story data x2, story tokens x2,
    story, and the second phases that run."""
    return 12 + (pick["t1_colour_steps"] > 0) + (pick["t2_more_steps"] > 0)


def _stories(log: StageLog, work: Path, llm: Path, tokenizer, pick: dict, seed: int) -> Path:
    """Stage 6: story data (training pairs / held-out pairs), the segments' tokens, story fine-tuning."""
    data = work / "data"
    files = {}
    for split, held_out, num, offset in (("train", False, pick["num_stories"], 2),
                                         ("held_out", True, pick["num_held_out_stories"], 3)):
        folder = data / f"stories_{split}"
        if not (folder / "summary.json").exists():
            log.time(f"story data {split}", partial(generate_dataset, folder, num=0, seed=seed + offset,
                                                    held_out=held_out, num_stories=num),
                     stories=num, seed=seed + offset, held_out=held_out)
        files[split] = folder / "stories.jsonl"
        log.time(f"story tokens {split}", partial(build_token_cache, tokenizer, files[split],
                                                  work / f"story_{split}_tokens", batch_size=32))
    run = work / "story"
    if not (run / "model" / "config.json").exists():
        log.run("story", train_story.main, [
            "--config", str(CONFIGS / "story" / "shapes_tiny.yaml"), f"model={llm}", f"output_dir={run}",
            f"optim.max_steps={pick['story_steps']}", f"seed={seed}",
            f"data.sources=[{{kind: story, annotations: '{files['train']}', tokens: '{work / 'story_train_tokens'}'}}]",
            f"eval.stories={files['held_out']}", f"eval.story_tokens={work / 'story_held_out_tokens'}",
            "eval.every=0", "checkpoint_every=200"], steps=pick["story_steps"])
    return run


def _sources(train_dir: Path, tokens: Path) -> str:
    meta, ego = train_dir / "metadata.jsonl", train_dir / "egoschema"
    items = [
        f"{{kind: caption, annotations: '{meta}', tokens: '{tokens}', weight: 2.0}}",
        f"{{kind: generation, format: generation_instruction, annotations: '{meta}', tokens: '{tokens}', "
        "weight: 1.0}",
        f"{{kind: qa, annotations: '{ego / 'questions.json'}', answers: '{ego / 'subset_answers.json'}', "
        f"tokens: '{tokens}', weight: 1.0}}",
        f"{{kind: qa, annotations: '{train_dir / 'msvd' / 'qa.json'}', tokens: '{tokens}', weight: 0.5}}",
    ]
    return "data.sources=[" + ", ".join(items) + "]"


def _llm_eval(held_dir: Path, tokens: Path) -> list[str]:
    ego = held_dir / "egoschema"
    return [f"eval.annotations={held_dir / 'metadata.jsonl'}", f"eval.tokens={tokens}",
            f"eval.questions={ego / 'questions.json'}", f"eval.answers={ego / 'subset_answers.json'}"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(ROOT / "divot" / "assets" / "shapes-tiny"), help="model directory")
    parser.add_argument("--work", default="runs/shapes_model", help="run folders of every stage (resumable)")
    parser.add_argument("--quick", action="store_true", help="smaller data and fewer steps (divot demo --train)")
    parser.add_argument("--minutes", type=float, default=0.0, help="wall-time budget of T1 is 60%% of this")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    try:
        command = "python train/shapes_model.py " + " ".join(argv if argv is not None else sys.argv[1:])
        record = build(Path(args.out), Path(args.work), quick=args.quick, seed=args.seed, minutes=args.minutes,
                       command=command.strip())
    except (RuntimeError, ValueError, FileNotFoundError) as e:
        logger.error("%s", e)
        return 2
    logger.info("training record: %s", json.dumps({k: record[k] for k in ("minutes_this_run", "settings")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
