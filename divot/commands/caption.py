"""``divot caption VIDEO --model M``: caption a video; the caption goes to stdout."""

from __future__ import annotations

import argparse
from pathlib import Path

from divot.commands.console import out
from divot.commands.model_options import add_comprehension_arguments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("video", type=Path, help="video file (mp4, gif, webm, ...)")
    parser.add_argument("--instruction", default=None,
                        help="ask this instead of using the caption prompt, e.g. 'Describe the video.' "
                             "(for instruction-tuned models)")
    parser.add_argument("--rerank", type=int, default=0, metavar="N",
                        help="noisy-channel reranking: the best of N beam-search captions by log P(caption | video) "
                             "+ W log p(video | caption) (deterministic; 0, the default: plain decoding)")
    parser.add_argument("--channel-weight", type=float, default=0.1, metavar="W", help="W of --rerank (default 0.1)")
    parser.add_argument("--check", action="append", default=[], metavar="'QUESTION=ANSWER,ANSWER,...'",
                        help="with --rerank: also ask QUESTION and add V log P(the answer the caption names | video, "
                             "question), e.g. 'what shape is the object?=circle,square,triangle,diamond,cross' "
                             "(repeatable)")
    parser.add_argument("--check-weight", type=float, default=4.0, metavar="V", help="V of --check (default 4)")
    add_comprehension_arguments(parser)


def parse_check(text: str):
    """``'question=answer,answer,...'`` -> ``AnswerCheck``."""
    from divot.llm.rerank import AnswerCheck

    question, sep, answers = text.rpartition("=")
    if not sep:
        raise ValueError(f"--check {text!r}: expected 'QUESTION=ANSWER,ANSWER,...'")
    return AnswerCheck(question.strip(), tuple(a.strip() for a in answers.split(",")))


def run(args) -> int:
    from divot.commands.model_options import check_model, check_video, decoding_options, load_model

    check_video(args.video)
    check_model(args.model)
    options = decoding_options(args)
    if args.rerank < 0 or args.channel_weight < 0:
        raise ValueError(f"--rerank and --channel-weight must be >= 0, got {args.rerank} and {args.channel_weight}")
    if args.rerank and args.instruction is not None:
        raise ValueError("--rerank uses the caption prompt: drop --instruction")
    checks = [parse_check(c) for c in args.check]
    if checks and not args.rerank:
        raise ValueError("--check needs --rerank N")
    if args.check_weight < 0:
        raise ValueError(f"--check-weight must be >= 0, got {args.check_weight}")
    model = load_model(args)
    if args.rerank:
        tokens = model.tokens(args.video, max_clips=args.max_clips, progress=True)
        from divot.llm.rerank import rerank_captions

        ranked = rerank_captions(model.llm, model.builder, tokens, args.rerank, args.channel_weight,
                                 max_new_tokens=options.get("max_new_tokens"), checks=checks,
                                 check_weight=args.check_weight)
        out(ranked[0].text)
        return 0
    if args.instruction is not None:
        chat = model.chat(**options)
        chat.set_video(args.video, max_clips=args.max_clips, progress=True)
        out(chat.ask(args.instruction))
        return 0
    seed = options.pop("seed")
    prompt = model.builder.caption_prompt(model.tokens(args.video, max_clips=args.max_clips, progress=True))
    out(model.generate_text(prompt, seed=seed, **options))
    return 0
