"""Rehearse what a user with the released Divot files does, at paper size, with random weights, on this machine.

1. ``write``: files in the released layouts and key names (DESIGN section 7), every name and shape derived from
   the project's presets and the inverse of the converters' renaming (``_released_files``):
   ``Divot_tokenizer_detokenizer/{Divot_tokenizer.bin, Divot_detokenizer_stage2.bin}``,
   ``open_clip_pytorch_model.bin`` (OpenCLIP ViT-H/14 ``visual.*``), ``Divot_sft_comp/llm/`` (a Hugging Face
   MistralForCausalLM in sharded fp32 safetensors, written shard by shard; ``--llm-layers`` decoder layers),
   ``Divot_sft_comp/agent/pytorch_model.bin``, ``cvlm_mistral_instruct_tokenizer/`` (Mistral's real
   sentencepiece model + the Divot tokens), and the inputs: a 4-second 320x240 25 fps shapes-world mp4 and two
   questions in the EgoSchema format.
2. ``convert``: ``divot convert tokenizer / detokenizer / llm`` into ``model/``, as the README documents them.
3. ``ask``, ``eval`` (``divot eval egoschema``), ``generate``, ``story``: the CLI on that model (bf16 LLM). Random
   weights never end a text nor open a video by themselves, so ``ask`` and ``story`` stop at ``--max-new-tokens``
   and ``generate`` opens the video at once (``--open-video force``; the converted ``generation.json`` says
   ``sample``, which would first sample 256 tokens of noise); ``--num-steps`` de-tokenizer steps.

Every step is a child process (the write steps re-run this script with ``--write-part``); per step the JSON keeps
its command, wall time, peak RSS (``ru_maxrss`` of the child from ``wait4``, and the sampled peak of its process
tree), return code and, on failure, the end of its stderr. A failed step does not stop the run: steps that need
it are skipped. ``--max-rss-gib`` kills a step whose process tree grows past it (a shared machine). Unless
``--keep``, the big files are deleted: each released-layout file once no later step of the run reads it, ``model/``
at the end (at paper size with 32 layers the run still needs about 55 GB of disk at its peak, during
``convert_llm``: the fp32 LLM, its bf16 conversion and the converted tokenizer and de-tokenizer).

    python benchmarks/paper_rehearsal.py                                  # paper size, 32 layers (CPU hours)
    python benchmarks/paper_rehearsal.py --llm-layers 1 --steps write,convert --max-rss-gib 12
    python benchmarks/paper_rehearsal.py --size tiny --out /tmp/rehearsal.json   # the test's setting, ~3 min
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from _released_files import sizes
from _timing import load_avg, provenance

logger = logging.getLogger("paper_rehearsal")

TOKENIZER_BIN = "Divot_tokenizer_detokenizer/Divot_tokenizer.bin"
DETOKENIZER_BIN = "Divot_tokenizer_detokenizer/Divot_detokenizer_stage2.bin"
CLIP_BIN = "open_clip_pytorch_model.bin"
LLM_DIR = "Divot_sft_comp/llm"
AGENT_BIN = "Divot_sft_comp/agent/pytorch_model.bin"
TEXT_TOKENIZER_DIR = "cvlm_mistral_instruct_tokenizer"
TOKENIZER_CONFIG = "tokenizer_config.json"  # tiny only: the --config of `divot convert tokenizer`
DETOKENIZER_CONFIG = "detokenizer_config.json"  # tiny only: the --config of `divot convert detokenizer`
VIDEO = "inputs/video.mp4"
EGOSCHEMA = "inputs/egoschema"
MODEL = "model"

# The golden miniature of the reference tokenizer (tests/fixtures/golden/tokenizer_config.json): the tiny preset
# itself has head counts the reference code fixes otherwise, so the tiny rehearsal uses these arguments.
TINY_TOKENIZER_REFERENCE = {
    "tokenizer_config": {"num_frames": 5, "input_dim": 64, "hidden_size": 128, "width": 96, "temporal_depth": 2,
                         "pool_size": 5, "use_norm": True, "transformer_depth": 2, "resampler_depth": 2,
                         "st_num_tokens": 125, "down_num_tokens": 16, "resampler_dim": 32},
    "open_clip_vision_cfg": {"image_size": 224, "layers": 2, "width": 64, "head_width": 16, "patch_size": 32},
}
TINY_FRAME_SIZE = 32  # de-tokenizer output side at tiny size (the paper's 256 would make its attention huge)
OPEN_CLIP_EMBED_DIM = {"paper": 1024, "tiny": 32}  # width of visual.proj (ViT-H-14: 1024); Divot drops it


@dataclass
class Size:
    """The configurations of one rehearsal size, consistent across tokenizer, LLM and de-tokenizer."""

    name: str
    tokenizer: object  # TokenizerConfig
    detokenizer: object  # DetokenizerConfig
    llm: object  # DivotLLMConfig with base
    tokenizer_reference: dict | None = None  # --config JSONs (None: the converters' paper defaults)
    detokenizer_reference: dict | None = None
    vocab_size: int = 0


def build_size(name: str, llm_layers: int | None) -> Size:
    from divot.constants import SPECIAL_TOKENS
    from divot.convert.tokenizer import config_from_reference
    from divot.diffusion.config import condition_preset, unet_preset, vae_preset
    from divot.diffusion.detokenizer import DetokenizerConfig, detokenizer_preset
    from divot.llm.config import llm_preset
    from divot.llm.mistral_spm import BASE_VOCAB
    from divot.tokenizer.config import tokenizer_preset

    if name == "paper":
        size = Size(name, tokenizer_preset("paper"), detokenizer_preset("paper"), llm_preset("paper"))
    else:
        from _released_files import reference_detokenizer_args

        ref = TINY_TOKENIZER_REFERENCE
        tokenizer = config_from_reference(ref["tokenizer_config"], ref["open_clip_vision_cfg"])
        detokenizer = DetokenizerConfig(unet=unet_preset("tiny"), condition=condition_preset("tiny"),
                                        vae=vae_preset("tiny"), num_tokens=tokenizer.num_tokens,
                                        frame_size=TINY_FRAME_SIZE)
        size = Size(name, tokenizer, detokenizer, llm_preset("tiny"), ref, reference_detokenizer_args(detokenizer))
    if llm_layers is not None:
        size.llm.base.num_layers = llm_layers
    size.vocab_size = BASE_VOCAB + len(SPECIAL_TOKENS)  # Mistral's 32000 + the Divot tokens: 32262
    t, d, m = size.tokenizer, size.detokenizer, size.llm
    if not t.token_dim == d.token_dim == m.token_dim or t.num_tokens != m.num_queries:
        raise ValueError(f"{name}: tokens disagree: tokenizer {t.num_tokens} x {t.token_dim}, de-tokenizer "
                         f"{d.token_dim}, LLM {m.num_queries} x {m.token_dim}")
    return size


# -- the write steps (run in a child: python paper_rehearsal.py --write-part PART) ------------------------------
def write_part(part: str, work: Path, size: Size, seed: int, max_shard_bytes: int) -> None:
    import _released_files as rf

    from divot.hub import atomic_write_text

    if part == "tokenizer":
        rf.write_pickle(rf.tokenizer_spec(size.tokenizer), work / TOKENIZER_BIN, seed)
        rf.write_pickle(rf.open_clip_spec(size.tokenizer.frame_encoder, OPEN_CLIP_EMBED_DIM[size.name]),
                        work / CLIP_BIN, seed)
        if size.tokenizer_reference:
            atomic_write_text(work / TOKENIZER_CONFIG, json.dumps(size.tokenizer_reference, indent=1) + "\n")
    elif part == "detokenizer":
        d = size.detokenizer
        rf.write_pickle(rf.detokenizer_spec(d.unet, d.condition, d.vae), work / DETOKENIZER_BIN, seed)
        if size.detokenizer_reference:
            atomic_write_text(work / DETOKENIZER_CONFIG, json.dumps(size.detokenizer_reference, indent=1) + "\n")
    elif part == "llm":
        hf_config, llm_spec, agent_spec = rf.llm_specs(size.llm, size.vocab_size)
        rf.write_pickle(agent_spec, work / AGENT_BIN, seed)
        rf.write_hf_llm(hf_config, llm_spec, work / LLM_DIR, seed, max_shard_bytes)
    elif part == "text_tokenizer":
        from divot.llm.mistral_spm import build_mistral_tokenizer

        tokenizer = build_mistral_tokenizer(work / TEXT_TOKENIZER_DIR, legacy=True)
        if len(tokenizer) != size.vocab_size:
            raise ValueError(f"the tokenizer has {len(tokenizer)} ids, the LLM {size.vocab_size} rows")
    elif part == "inputs":
        write_inputs(work)
    else:
        raise ValueError(f"unknown write part {part!r}")


def write_inputs(work: Path) -> None:
    """``inputs/video.mp4`` (4 s, 320x240, 25 fps) and two EgoSchema-format questions on two such videos."""
    from divot.data.shapes.world import ClipSpec, ObjectSpec, render_clip
    from divot.data.writers import write_video
    from divot.hub import atomic_write_text

    scenes = [("circle", "red", "moves left"), ("square", "green", "moves up")]
    videos = []
    for shape, colour, motion in scenes:
        frames = render_clip(ClipSpec((ObjectSpec(shape, colour, motion),)), size=320, num_frames=100,
                             antialias=False)[:, 40:280]  # (100, 240, 320, 3): 4 s at 25 fps
        videos.append(frames)
    write_video(videos[0], work / VIDEO, fps=25)
    questions, answers = [], {}
    for i, ((shape, colour, motion), frames) in enumerate(zip(scenes, videos, strict=True)):
        uid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"divot-paper-rehearsal-{i}"))
        write_video(frames, work / EGOSCHEMA / "videos" / f"{uid}.mp4", fps=25)
        options = [f"c watches a {colour} {shape} that {m}" for m in
                   ("moves left", "moves up", "moves right", "moves down", "stays still")]
        questions.append({"q_uid": uid, "google_drive_id": "", "question": "What does the object in the video do?",
                          **{f"option {j}": o for j, o in enumerate(options)}})
        answers[uid] = options.index(f"c watches a {colour} {shape} that {motion}")
    atomic_write_text(work / EGOSCHEMA / "questions.json", json.dumps(questions, indent=1) + "\n")
    atomic_write_text(work / EGOSCHEMA / "subset_answers.json", json.dumps(answers, indent=1) + "\n")


# -- the steps --------------------------------------------------------------------------------------------------
@dataclass
class Step:
    name: str
    group: str  # what --steps selects (write, convert, ask, eval, generate, story), or the name itself
    needs: tuple[str, ...]
    outputs: tuple[str, ...]  # relative to --work
    big: bool = False  # deleted at the end unless --keep
    args: list[str] = field(default_factory=list)  # the command after `divot` (or the write part)


def plan(args, size: Size) -> list[Step]:
    tiny = size.name == "tiny"
    run_opts = ["--device", "cpu", "--dtype", args.dtype]
    write = [
        Step("write_tokenizer", "write", (), (TOKENIZER_BIN, CLIP_BIN) + ((TOKENIZER_CONFIG,) if tiny else ()), True),
        Step("write_detokenizer", "write", (), (DETOKENIZER_BIN,) + ((DETOKENIZER_CONFIG,) if tiny else ()), True),
        Step("write_llm", "write", (), (LLM_DIR, AGENT_BIN), True),
        Step("write_text_tokenizer", "write", (), (TEXT_TOKENIZER_DIR,)),
        Step("write_inputs", "write", (), (VIDEO, EGOSCHEMA)),
    ]
    for step in write:
        step.args = [step.name.removeprefix("write_")]
    convert = [
        Step("convert_tokenizer", "convert", ("write_tokenizer",), (f"{MODEL}/tokenizer",), True,
             ["convert", "tokenizer", "--tokenizer-ckpt", TOKENIZER_BIN, "--clip-ckpt", CLIP_BIN]
             + (["--config", TOKENIZER_CONFIG] if tiny else []) + ["--out", f"{MODEL}/tokenizer"]),
        Step("convert_detokenizer", "convert", ("write_detokenizer", "convert_tokenizer"),
             (f"{MODEL}/detokenizer", f"{MODEL}/generation.json"), True,
             ["convert", "detokenizer", "--ckpt", DETOKENIZER_BIN, "--tokenizer", f"{MODEL}/tokenizer"]
             + (["--config", DETOKENIZER_CONFIG] if tiny else []) + ["--out", f"{MODEL}/detokenizer"]),
        Step("convert_llm", "convert", ("write_llm", "write_text_tokenizer"), (f"{MODEL}/llm",), True,
             ["convert", "llm", "--llm-dir", LLM_DIR, "--agent-ckpt", AGENT_BIN, "--tokenizer-dir", TEXT_TOKENIZER_DIR]
             + (["--num-queries", str(size.llm.num_queries)] if tiny else [])
             + ["--dtype", "bfloat16", "--out", f"{MODEL}/llm"]),
    ]
    reading = ("convert_tokenizer", "convert_llm", "write_inputs")
    drawing = ("convert_tokenizer", "convert_detokenizer", "convert_llm")
    use = [
        Step("ask", "ask", reading, (), False,
             ["ask", "--model", MODEL, VIDEO, "What happens?", "--max-new-tokens", str(args.max_new_tokens)] + run_opts),
        Step("eval_egoschema", "eval", reading, ("outputs/egoschema",), False,
             ["eval", "egoschema", "--model", MODEL, "--questions", f"{EGOSCHEMA}/questions.json",
              "--answers", f"{EGOSCHEMA}/subset_answers.json", "--videos", f"{EGOSCHEMA}/videos",
              "--out", "outputs/egoschema", "--no-progress"] + run_opts),
        Step("generate", "generate", drawing, ("outputs/generate.mp4",), False,
             ["generate", "a red circle", "--model", MODEL, "--out", "outputs/generate.mp4",
              "--steps", str(args.num_steps), "--open-video", "force", "--seed", "0"] + run_opts),
        Step("story", "story", drawing, ("outputs/story",), False,
             ["story", "Generate a story about a red circle.", "--model", MODEL, "--out", "outputs/story",
              "--segments", "1", "--steps", str(args.num_steps), "--max-new-tokens", str(args.max_new_tokens)]
             + run_opts),
    ]
    return write + convert + use


def select(steps: list[Step], spec: str) -> list[Step]:
    wanted = {s.strip() for s in spec.split(",") if s.strip()}
    known = {s.name for s in steps} | {s.group for s in steps}
    unknown = sorted(wanted - known)
    if unknown:
        raise ValueError(f"--steps: unknown {unknown}; choose from groups {sorted({s.group for s in steps})} or "
                         f"steps {[s.name for s in steps]}")
    return [s for s in steps if s.name in wanted or s.group in wanted]


def command_for(step: Step, args) -> tuple[list[str], str]:
    """(argv to run, the command as a user would type it)."""
    if step.group == "write":
        argv = [sys.executable, str(Path(__file__).resolve()), "--write-part", *step.args, "--work", ".",
                "--size", args.size, "--seed", str(args.seed), "--max-shard-gb", str(args.max_shard_gb)]
        if args.llm_layers is not None:
            argv += ["--llm-layers", str(args.llm_layers)]
        return argv, shlex.join(["python", "benchmarks/paper_rehearsal.py", *argv[2:]])
    exe = Path(sys.executable).with_name("divot")
    prefix = [str(exe)] if exe.is_file() else [sys.executable, "-c", "import sys; from divot.cli import main; "
                                                                     "sys.exit(main())"]
    return prefix + step.args, shlex.join(["divot", *step.args])


def run_child(argv: list[str], cwd: Path, log_stem: Path, max_rss_bytes: int | None, timeout: float | None) -> dict:
    """Run one step; its wall time, ``ru_maxrss`` (``wait4``), sampled process-tree peak, return code."""
    import psutil

    log_stem.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{log_stem}.stdout", "w") as out, open(f"{log_stem}.stderr", "w") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=cwd, stdout=out, stderr=err, start_new_session=True)
        killed, sampled, delay = None, 0, 0.01
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            try:
                root = psutil.Process(proc.pid)
                rss = sum(p.memory_info().rss for p in [root, *root.children(recursive=True)])
            except psutil.Error:  # exiting between wait4 and here
                rss = 0
            sampled = max(sampled, rss)
            elapsed = time.perf_counter() - t0
            if killed is None and max_rss_bytes and rss > max_rss_bytes:
                killed = f"killed: its processes held {rss / 2**30:.1f} GiB > --max-rss-gib {max_rss_bytes / 2**30:g}"
            elif killed is None and timeout and elapsed > timeout:
                killed = f"killed: still running after --step-timeout {timeout:g} s"
            if killed and proc.returncode is None:
                os.killpg(proc.pid, signal.SIGKILL)  # the step's own process group (start_new_session)
                proc.returncode = -signal.SIGKILL
            time.sleep(delay)
            delay = min(delay * 2, 0.25)
        seconds = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait again
    return {"returncode": proc.returncode, "seconds": round(seconds, 2),
            "peak_rss_gib": round(usage.ru_maxrss * 1024 / 2**30, 3),  # Linux: KiB
            "sampled_peak_rss_gib": round(sampled / 2**30, 3), "killed": killed}


def tail(path: Path, lines: int) -> list[str]:
    text = path.read_text(errors="replace").splitlines() if path.is_file() else []
    return text[-lines:]


def markdown_table(record: dict) -> str:
    rows = ["| step | status | wall (s) | peak RSS (GiB) | written (GB) | command or reason |",
            "|---|---|---|---|---|---|"]
    for s in record["steps"]:
        wrote = f"{s['output_bytes'] / 1e9:.2f}" if s.get("output_bytes") else ""
        what = s.get("reason") or f"`{s['command']}`"
        rows.append(f"| {s['name']} | {s['status']} | {s.get('seconds', '')} | {s.get('peak_rss_gib', '')} | "
                    f"{wrote} | {what} |")
    return "\n".join(rows)


def run(args) -> dict:
    import psutil

    from divot.hub import atomic_write_text

    size = build_size(args.size, args.llm_layers)
    work, out = Path(args.work).resolve(), Path(args.out).resolve()
    work.mkdir(parents=True, exist_ok=True)
    steps = select(plan(args, size), args.steps)
    record = provenance(args.argv, __file__)
    record["machine"]["ram_gib"] = round(psutil.virtual_memory().total / 2**30, 1)
    record["benchmark"] = "paper_rehearsal"
    record["options"] = {k: v for k, v in vars(args).items() if k not in ("argv", "write_part")}
    record["options"]["work"], record["options"]["out"] = str(work), str(out)
    record["sizes"] = {"llm_layers": size.llm.base.num_layers, "llm_hidden": size.llm.hidden_size,
                       "vocab": size.vocab_size, "tokens_per_clip": [size.tokenizer.num_tokens, size.tokenizer.token_dim],
                       "vit": [size.tokenizer.frame_encoder.width, size.tokenizer.frame_encoder.depth],
                       "unet_channels": size.detokenizer.unet.model_channels}
    record["steps"], record["deleted"] = [], []
    status: dict[str, str] = {}
    every = {s.name: s for s in plan(args, size)}
    t_start = time.perf_counter()
    for step in steps:
        argv, typed = command_for(step, args)
        entry = {"name": step.name, "group": step.group, "command": typed, "started": time.strftime("%H:%M:%S")}
        blocked = [n for n in step.needs if status.get(n, "ok" if _present(work, every[n]) else "missing") != "ok"]
        if blocked:
            why = ", ".join(f"{n} ({status.get(n, 'not run, outputs missing')})" for n in blocked)
            entry.update(status="skipped", reason=f"needs {why}")
        else:
            for rel in step.outputs:  # a rerun redoes the work (no resuming, no stale shards)
                _remove(work / rel)
            logger.info("%s: %s", step.name, typed)
            result = run_child(argv, work, work / "logs" / step.name, int(args.max_rss_gib * 2**30)
                               if args.max_rss_gib else None, args.step_timeout or None)
            entry.update(result)
            entry["status"] = "ok" if result["returncode"] == 0 and not result["killed"] else "failed"
            entry["stdout_tail"] = tail(work / "logs" / f"{step.name}.stdout", 5)
            if entry["status"] == "failed":
                entry["stderr_tail"] = tail(work / "logs" / f"{step.name}.stderr", 25)
                entry["reason"] = result["killed"] or f"exit {result['returncode']}: " + \
                    next((line for line in reversed(entry["stderr_tail"]) if line.strip()), "")
            entry["output_bytes"] = sizes(work / rel for rel in step.outputs)
            logger.info("%s: %s in %.1f s, peak RSS %.2f GiB", step.name, entry["status"], result["seconds"],
                        result["peak_rss_gib"])
        status[step.name] = entry["status"]
        record["steps"].append(entry)
        if not args.keep:  # released-layout files as soon as no later step of this run reads them (disk)
            later = {n for s in steps[steps.index(step) + 1:] for n in s.needs}
            _delete_big([s for s in steps[:steps.index(step) + 1] if s.group == "write" and s.name not in later],
                        work, record["deleted"])
        atomic_write_text(out, json.dumps(record, indent=1) + "\n")
    record["total_seconds"] = round(time.perf_counter() - t_start, 1)
    if not args.keep:
        _delete_big(steps, work, record["deleted"])
    record["load_avg_after"] = load_avg()
    record["markdown"] = markdown_table(record)
    atomic_write_text(out, json.dumps(record, indent=1) + "\n")
    logger.info("wrote %s\n%s", out, record["markdown"])
    return record


def _delete_big(steps: list[Step], work: Path, deleted: list[str]) -> None:
    for step in steps:
        for rel in step.outputs if step.big else ():
            if (work / rel).exists():
                _remove(work / rel)
                deleted.append(rel)


def _present(work: Path, step: Step) -> bool:
    return all((work / rel).exists() for rel in step.outputs)


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=("paper", "tiny"), default="paper",
                        help="paper: the released dimensions (default); tiny: the golden miniatures and a 2-layer "
                             "LLM (the test)")
    parser.add_argument("--llm-layers", type=int, default=None,
                        help="decoder layers of the written Mistral (default: the preset's, 32 at paper size)")
    parser.add_argument("--work", default="runs/paper_rehearsal", help="folder for the files and logs")
    parser.add_argument("--out", default="benchmarks/results/paper_rehearsal.json", help="the result JSON")
    parser.add_argument("--keep", action="store_true", help="keep the released-layout files and model/ at the end")
    parser.add_argument("--steps", default="write,convert,ask,eval,generate,story",
                        help="comma list of groups (write, convert, ask, eval, generate, story) or step names")
    parser.add_argument("--dtype", choices=("bfloat16", "float32"), default="bfloat16", help="LLM dtype when running")
    parser.add_argument("--max-new-tokens", type=int, default=8, help="ask / story text length (random weights "
                                                                      "rarely stop by themselves)")
    parser.add_argument("--num-steps", type=int, default=2, help="de-tokenizer sampling steps for generate / story")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    parser.add_argument("--max-shard-gb", type=float, default=2.0, help="LLM safetensors shard size (whole layers)")
    parser.add_argument("--max-rss-gib", type=float, default=None,
                        help="kill a step whose processes hold more than this (default: no limit)")
    parser.add_argument("--step-timeout", type=float, default=None, help="kill a step after this many seconds")
    parser.add_argument("--write-part", default=None, help=argparse.SUPPRESS)  # the child of a write step
    args = parser.parse_args(argv)
    args.argv = argv
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    if args.llm_layers is not None and args.llm_layers < 1:
        parser.error(f"--llm-layers must be >= 1, got {args.llm_layers}")
    if args.write_part:
        size = build_size(args.size, args.llm_layers)
        write_part(args.write_part, Path(args.work), size, args.seed, int(args.max_shard_gb * 1e9))
        return 0
    record = run(args)
    return 0 if all(s["status"] == "ok" for s in record["steps"]) else 1


if __name__ == "__main__":
    sys.exit(main())
