"""The options of ``divot eval TASK`` and ``python -m eval.TASK`` (one set for every benchmark task), and how
they become an ``EvalConfig``, a model and a judge. One small module per task names it for the dispatch
table (``divot.commands.eval.TASKS``)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from divot.commands import console

logger = logging.getLogger(__name__)

HELP = {
    "egoschema": "EgoSchema five-way multiple choice (subset accuracy + full-set submission)",
    "nextqa": "NExT-QA multiple choice (csv), accuracy per question type",
    "msvd-qa": "MSVD-QA open-ended (exact / contains match, optional LLM judge)",
    "activitynet-qa": "ActivityNet-QA open-ended (exact / contains match, optional LLM judge)",
}


def add_task_arguments(parser: argparse.ArgumentParser, task: str) -> None:
    from divot.commands.model_options import add_model_arguments

    kind = "mc" if task in ("egoschema", "nextqa") else "open"
    what = {"egoschema": "questions.json ({q_uid, question, option 0..4})",
            "nextqa": "the NExT-QA multiple-choice csv",
            "msvd-qa": "test_q.json (with --answers test_a.json) or [{question, video_name, answer}]",
            "activitynet-qa": "test_q.json (with --answers test_a.json) or [{question, video_name, answer}]"}[task]
    parser.add_argument("--questions", required=True, type=Path, help=what)
    parser.add_argument("--answers", type=Path, default=None,
                        help="subset_answers.json ({q_uid: index})" if task == "egoschema"
                        else "test_a.json, parallel to --questions (Video-ChatGPT format)")
    parser.add_argument("--videos", type=Path, default=None, help="the folder of videos")
    parser.add_argument("--tokens-cache", type=Path, default=None,
                        help="read clip tokens from this token cache (divot cache-features) by video id "
                             "instead of decoding the videos")
    parser.add_argument("--out", required=True, type=Path,
                        help="output folder: predictions.jsonl, summary.json (a rerun resumes)")
    if kind == "mc":
        parser.add_argument("--mode", choices=["ll", "gen"], default="ll",
                            help="ll: option log-likelihood (shared-prefix KV cache); gen: generate a letter "
                                 "(default ll)")
        parser.add_argument("--ll-normalize", choices=["mean", "sum"], default="mean",
                            help="ll mode: mean (per token, default) or sum of the option's log-likelihood")
    else:
        parser.add_argument("--judge", default=None,
                            help="LLM judge (Video-ChatGPT prompt): an OpenAI-compatible URL "
                                 "(http://host:8000/v1) or a local Hugging Face model directory")
        parser.add_argument("--judge-model", default=None, help="the model name sent to an HTTP judge")
        parser.add_argument("--judge-api-key-env", default="OPENAI_API_KEY",
                            help="environment variable holding the HTTP judge's API key (default OPENAI_API_KEY)")
        parser.add_argument("--accuracy-metric", choices=["exact", "contains", "judge"], default=None,
                            help="what 'accuracy' is (default: judge with --judge, else exact)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N questions")
    parser.add_argument("--prompt-template", default=None,
                        help="the question text of the prompt, with {question} (and {options} for multiple "
                             "choice); default: the task's (see the README's Evaluation section)")
    parser.add_argument("--max-clips", type=int, default=None, help="at most this many 2-second clips (20)")
    parser.add_argument("--sample", action="store_true",
                        help="sample (temperature / top-p) instead of greedy decoding")
    parser.add_argument("--temperature", type=float, default=None, help="with --sample (default: the model's, 0.7)")
    parser.add_argument("--top-p", type=float, default=None, help="with --sample (default: the model's, 0.5)")
    parser.add_argument("--max-new-tokens", type=int, default=None,
                        help="longest generated answer (default 16 multiple choice, 32 open-ended)")
    parser.add_argument("--seed", type=int, default=0, help="sampling and bootstrap seed (default 0)")
    parser.add_argument("--bootstrap-resamples", type=int, default=1000, help="for the 95%% CI (default 1000)")
    parser.add_argument("--num-workers", type=int, default=None,
                        help="processes decoding videos ahead of the model (default: up to 4, one core left per "
                             "process; 0: decode in the main process)")
    parser.add_argument("--batch-size", type=int, default=1,
                        help="questions answered together: their prompts run in one left-padded forward pass "
                             "(ll scores and greedy answers are those of 1, the default; sampled answers stay one "
                             "at a time to keep per-item seeds)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_model_arguments(parser)


def config_from_args(task: str, args):
    from divot.data.prefetch import default_num_workers
    from divot.eval.runner import EvalConfig

    num_workers = getattr(args, "num_workers", None)
    if num_workers is None:
        num_workers = 0 if args.videos is None else default_num_workers()
    return EvalConfig(
        task=task, model=args.model, questions=args.questions, answers=args.answers, videos=args.videos,
        out=args.out, mode=getattr(args, "mode", "gen"), limit=args.limit, tokens_cache=args.tokens_cache,
        seed=args.seed, prompt_template=args.prompt_template, greedy=not args.sample, temperature=args.temperature,
        top_p=args.top_p, max_new_tokens=args.max_new_tokens, max_clips=args.max_clips,
        ll_normalize=getattr(args, "ll_normalize", "mean"), judge=getattr(args, "judge", None),
        judge_model=getattr(args, "judge_model", None),
        judge_api_key_env=getattr(args, "judge_api_key_env", "OPENAI_API_KEY"),
        accuracy_metric=getattr(args, "accuracy_metric", None), bootstrap_resamples=args.bootstrap_resamples,
        progress=not args.no_progress, num_workers=num_workers, batch_size=getattr(args, "batch_size", 1))


def run_task(task: str, args) -> int:
    """Validate the options, load the model (and judge), evaluate, print the accuracy line. Under ``torchrun``
    each rank takes its share of the questions on its own device (``divot.distributed``)."""
    from divot import distributed
    from divot.commands.model_options import check_model, load_model, resolve_device
    from divot.eval.evaluate import evaluate
    from divot.eval.judge import make_judge

    cfg = config_from_args(task, args)
    check_model(args.model)
    rank, _ = distributed.init_from_env()
    try:
        args.device = str(distributed.local_device(resolve_device(args.device)))
        judge = None
        if cfg.judge:
            judge = make_judge(cfg.judge, cfg.judge_model, cfg.judge_api_key_env, device=resolve_device(args.device))
        model = load_model(args)
        summary = evaluate(cfg, model, judge)
    finally:
        distributed.finish()
    if rank != 0:
        return 0
    acc, (low, high) = summary["accuracy"], summary["accuracy_ci95"]
    text = "n/a (no ground truth)" if acc is None else f"{acc:.4f} (95% CI {low:.4f}-{high:.4f})"
    console.out(f"{task}: accuracy {text}, {summary['counts']['answered']} answered, "
          f"{summary['missing_videos']} missing videos -> {cfg.out / 'summary.json'}")
    return 0


def main_for(task: str, argv: list[str] | None = None) -> int:
    """``python -m eval.TASK``: the same options as ``divot eval TASK``."""
    parser = argparse.ArgumentParser(prog=f"python -m eval.{task.replace('-', '_')}", description=HELP[task])
    add_task_arguments(parser, task)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    try:
        return run_task(task, args)
    except (ValueError, FileNotFoundError, KeyError, RuntimeError) as err:
        console.err(f"eval {task}: error: {err}")
        return 2
