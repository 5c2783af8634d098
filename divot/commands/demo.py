"""``divot demo``: the shapes-world demo (the README's main job).

Loads the bundled model (``shapes-tiny``, trained by ``train/shapes_model.py``; nothing is downloaded), generates
fresh shapes-world clips (new clips of the training colour-shape pairs, and clips of the held-out pairs: no
caption, question or story of the LLMs' training names them, while the tokenizer and de-tokenizer saw them as
pixels through the channel-shuffle phase; ``divot.eval.shapes_report.HELD_OUT_PAIRS``), captions them, answers five-way multiple-choice questions about them (option
log-likelihood, the EgoSchema task), generates videos from prompts and measures their pixels, tells stories
(text + clips, scored for structure and pixels), and writes ``report.html`` + ``summary.json``. ``--train`` first retrains every stage from scratch on the CPU (the quick
setting of ``train/shapes_model.py``, about 15 minutes on 2 free cores) and reports that model instead.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

logger = logging.getLogger(__name__)

SPLITS = {"new": (False, 1000), "held_out": (True, 2000)}  # split -> (held-out pairs?, seed offset)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="shapes-tiny", help="model directory or bundled name (default shapes-tiny)")
    parser.add_argument("--out", type=Path, default=Path("outputs/demo"), help="output folder")
    parser.add_argument("--num-clips", type=int, default=100,
                        help="fresh clips per split (captions and questions; at 100 a multiple-choice accuracy near "
                             "0.8 has a 95%% interval of about +-0.08)")
    parser.add_argument("--num-prompts", type=int, default=42,
                        help="videos generated from prompts, cycling through the motions (42: 24 direction prompts)")
    parser.add_argument("--num-stories", type=int, default=8,
                        help="stories told, half about training pairs and half about held-out pairs")
    from divot.chat.generation_defaults import SHAPES_DEMO

    # Explicit settings, whatever the model's generation.json says, so that the reported numbers are comparable.
    parser.add_argument("--steps", type=int, default=SHAPES_DEMO.num_steps,
                        help=f"sampler steps of each generated video (default {SHAPES_DEMO.num_steps}; the sampler is "
                             f"{SHAPES_DEMO.sampler}, guidance rescale {SHAPES_DEMO.guidance_rescale:g})")
    parser.add_argument("--guidance", type=float, default=SHAPES_DEMO.guidance_scale,
                        help=f"classifier-free guidance of the de-tokenizer (default {SHAPES_DEMO.guidance_scale:g})")
    parser.add_argument("--mode", choices=["sample", "mean", "top"], default="top",
                        help="how generated clips (prompt videos, story clips) take tokens from the GMM (default "
                             "top: the most probable component's mean; the bundled model's sampled components "
                             "often miss the colour)")
    parser.add_argument("--caption-rerank", type=int, default=16, metavar="N",
                        help="caption by noisy-channel reranking of N beam-search captions (the generative direction "
                             "votes: log P(caption | video) + w log p(video | caption)); the greedy captions are "
                             "scored beside them; 0: greedy only")
    parser.add_argument("--channel-weight", type=float, default=0.1, metavar="W",
                        help="w of --caption-rerank (default 0.1, chosen on a validation split)")
    parser.add_argument("--shape-check-weight", type=float, default=4.0, metavar="V",
                        help="--caption-rerank also asks 'what shape is the object?' and adds V log P(the caption's "
                             "shape | video, question) (default 4, chosen on a validation split); 0: off")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train", action="store_true",
                        help="retrain the whole model from scratch first (quick setting, CPU minutes)")
    parser.add_argument("--work", type=Path, default=None, help="--train run folders (default OUT/train)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")


def _train_quick(out: Path, work: Path) -> Path:
    root = Path(__file__).resolve().parents[2]
    if not (root / "train" / "shapes_model.py").is_file():
        raise FileNotFoundError(f"--train needs the repository's train/ and configs/ folders (not found under {root})")
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    from train.shapes_model import build

    build(out / "model", work, quick=True, command=f"divot demo --train --out {out} --work {work}")
    return out / "model"


def run(args) -> int:
    import torch

    from divot.chat import Divot
    from divot.data.shapes import generate_dataset
    from divot.eval.evaluate import evaluate
    from divot.eval.runner import EvalConfig
    from divot.eval.shapes_demo import (
        caption_scores,
        generation_prompts,
        generation_scores,
        story_instructions,
        story_scores,
    )
    from divot.eval.shapes_report import write_report

    if args.num_clips < 1 or args.num_prompts < 0 or args.num_stories < 0 or args.caption_rerank < 0:
        raise ValueError("--num-clips must be >= 1, --num-prompts, --num-stories and --caption-rerank >= 0")
    if args.channel_weight < 0 or args.shape_check_weight < 0:
        raise ValueError(f"--channel-weight and --shape-check-weight must be >= 0, got {args.channel_weight} and "
                         f"{args.shape_check_weight}")
    start = time.time()
    out: Path = args.out
    model_name = str(_train_quick(out, args.work or out / "train")) if args.train else args.model
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    model = Divot.from_pretrained(model_name, device=device)
    summary: dict = {"model": model_name, "device": device, "seed": args.seed, "splits": {}}
    for split, (held_out, offset) in SPLITS.items():
        folder = out / "clips" / split
        generate_dataset(folder, num=args.num_clips, seed=args.seed + offset, held_out=held_out, num_stories=0,
                         size=model.tokenizer.config.frame_size)
        records = [json.loads(line) for line in (folder / "metadata.jsonl").read_text().splitlines()]
        captions = caption_scores(model, records, folder, rerank=args.caption_rerank,
                                  channel_weight=args.channel_weight, check_weight=args.shape_check_weight)
        ego = folder / "egoschema"
        mc = evaluate(EvalConfig(task="egoschema", questions=ego / "questions.json",
                                 answers=ego / "subset_answers.json", videos=folder / "videos",
                                 out=out / "questions" / split, mode="ll", model=model_name), model)
        summary["splits"][split] = {"captions": captions,
                                    "multiple_choice": _mc_rows(mc, out / "questions" / split, ego / "questions.json")}
    if args.num_prompts:
        prompts = generation_prompts(args.num_prompts, args.seed)
        summary["generation"] = generation_scores(model, prompts, out / "generated", seed=args.seed,
                                                  num_steps=args.steps, guidance_scale=args.guidance, mode=args.mode)
    if args.num_stories:
        half = args.num_stories - args.num_stories // 2
        instructions = (story_instructions(half, args.seed, "train")
                        + story_instructions(args.num_stories // 2, args.seed, "held_out"))
        summary["stories"] = story_scores(model, instructions, out / "stories", seed=args.seed,
                                          num_steps=args.steps, guidance_scale=args.guidance, mode=args.mode)
    summary["seconds"] = round(time.time() - start, 1)
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    write_report(out / "report.html", summary, out)
    for split, res in summary["splits"].items():
        acc, greedy, ci = res["captions"]["accuracy"], res["captions"]["accuracy_greedy"], res["captions"]["ci95"]
        said = " ".join(f"{k} {acc[k]:.2f} [{ci[k][0]:.2f}-{ci[k][1]:.2f}]" for k in ("colour", "shape", "motion"))
        logger.info("%s clips: caption %s (greedy captions %.2f %.2f %.2f); multiple choice %.2f (95%% intervals "
                    "in brackets)", split, said, greedy["colour"], greedy["shape"], greedy["motion"],
                    res["multiple_choice"]["accuracy"])
    if "generation" in summary:
        acc = summary["generation"]["accuracy"]
        kinds = {k: "-" if v["accuracy"] is None else f"{v['accuracy']:.2f}"
                 for k, v in summary["generation"]["motion_by_kind"].items()}
        logger.info("generated videos: colour %.2f shape %.2f motion %.2f (direction prompts %s, still / size %s)",
                    acc["colour"], acc["shape"], acc["motion"], kinds["direction"], kinds["still or size"])
    if "stories" in summary:
        st = summary["stories"]["summary"]
        logger.info("stories: structured %.2f, subject as instructed %.2f, clip colour %.2f, clip motion %.2f",
                    st["structured"], st["follows_instruction"], st["clip_colour"], st["clip_motion"])
    logger.info("report: %s", out / "report.html")
    return 0


def _mc_rows(summary: dict, folder: Path, questions: Path) -> dict:
    """The multiple-choice summary's accuracy + interval, and each question with the option the model chose."""
    path = folder / "predictions.jsonl"
    preds = [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
    texts = {str(q["q_uid"]): q for q in json.loads(questions.read_text())}
    rows = []
    for p in preds:
        q = texts.get(str(p["id"]), {})
        chosen = q.get(f"option {p['pred']}") if p.get("pred") is not None else None
        rows.append({"id": p["id"], "question": q.get("question"), "prediction_text": chosen,
                     "correct": p.get("pred") is not None and p.get("pred") == p.get("answer")})
    return {"accuracy": summary["accuracy"], "ci95": summary.get("accuracy_ci95"), "chance": 0.2,
            "counts": summary.get("counts"), "rows": rows}
