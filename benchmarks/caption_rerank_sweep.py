"""Caption accuracy of noisy-channel reranking (``divot.llm.rerank``) over channel weights, on shapes-world clips.

    divot data shapes --out runs/rerank/val_held_out --num 200 --seed 1 --held-out
    python benchmarks/caption_rerank_sweep.py --clips runs/rerank/val_held_out --model shapes-tiny \
        --candidates 16 --out benchmarks/results/caption_rerank_val_held_out.json

For every clip the candidates (beam search, or ``--sample T``: sampling at temperature T; with ``--deletions``
also every one-word deletion of a candidate), their caption log-likelihoods and their channel log-likelihoods
are computed once; each setting then only re-picks the best candidate. Settings: the channel weight; the channel
read with the first generation template (what ``rerank_captions`` does) or, with ``--all-templates``, averaged
over all of ``GENERATION_TEMPLATES``; ``max_gap`` (only candidates whose caption log-likelihood is within that of
the best are kept; None keeps all); with ``--shape-check``, also the weight of the shapes world's shape
question (``SHAPE_CHECK``, an ``AnswerCheck``) at every channel weight. Written: per setting the colour / shape /
motion accuracy of the picked captions (weight 0 is beam search's own best) with 95% bootstrap intervals over the
clips and the wrong shapes by true pair, and how often a proposed candidate with the right shape was among
them at all ("oracle"); with ``--candidates-out``, every clip's scored candidates.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
from collections import Counter
from pathlib import Path

from tqdm.auto import tqdm

from divot.data.shapes.world import parse_caption
from divot.eval.bootstrap import bootstrap_ci
from divot.eval.shapes_demo import SHAPE_CHECK
from divot.llm.rerank import beam_candidates, channel_logprob, sampled_candidates, score_candidates
from divot.llm.sequences import GENERATION_TEMPLATES

logger = logging.getLogger("benchmarks.caption_rerank_sweep")
WEIGHTS = (0.0, 0.01, 0.02, 0.03, 0.05, 0.1, 0.2, 0.3, 1.0, 100.0)
MAX_GAPS = (None, 4.0, 6.0, 8.0, 10.0, 12.0, 15.0)  # keep candidates within this caption log-likelihood of the best
ATTRIBUTES = ("colour", "shape", "motion")
CHECK_WEIGHTS = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0)


def _scored(model, prompt, tokens, ids: list[list[int]], source: str, templates, checks) -> list[dict]:
    """``score_candidates`` at weight 0 (the channel under ``templates[0]``, the ``checks``' vote as "check"),
    plus the channel under the rest."""
    out = []
    for r in score_candidates(model.llm, model.builder, tokens, prompt, ids, channel_weight=0.0,
                              template=templates[0], checks=checks):
        per_template = [r.channel_logprob] + [channel_logprob(model.llm, model.builder, r.text, tokens, template=t)
                                              for t in templates[1:]]
        out.append({"text": r.text, "source": source, "caption": r.caption_logprob, "channel": r.channel_logprob,
                    "channel_mean": sum(per_template) / len(per_template), "channel_templates": per_template,
                    "check": r.check_logprob})
    return out


def one_word_deletions(texts: list[str]) -> list[str]:
    """Every caption made by deleting one word of one of ``texts``, not already among them, first seen first."""
    seen, out = set(texts), []
    for text in texts:
        words = text.split()
        for i in range(len(words) if len(words) > 1 else 0):
            cand = " ".join(words[:i] + words[i + 1:])
            if cand not in seen:
                seen.add(cand)
                out.append(cand)
    return out


def candidates_of(model, video: Path, num: int, deletions: bool, templates, temperature: float | None,
                  shape_check: bool = False) -> list[dict]:
    tokens = model.tokens(video)
    checks = [SHAPE_CHECK] if shape_check else []
    prompt = model.builder.caption_prompt(tokens)
    ids = (beam_candidates(model.llm, prompt, num) if temperature is None
           else sampled_candidates(model.llm, prompt, num, temperature=temperature))
    beams = _scored(model, prompt, tokens, ids, "beam", templates, checks)
    if not deletions:
        return beams
    eos = model.builder.ids.eos
    extra = [model.builder.encode(t) + [eos] for t in one_word_deletions([c["text"] for c in beams])]
    return beams + _scored(model, prompt, tokens, extra, "deletion", templates, checks)


def main(argv: list[str] | None = None) -> int:
    from divot import Divot

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=Path, required=True, help="a shapes-world dataset folder (metadata.jsonl)")
    parser.add_argument("--model", default="shapes-tiny")
    parser.add_argument("--candidates", type=int, default=16)
    parser.add_argument("--sample", type=float, default=None, metavar="TEMPERATURE",
                        help="propose by sampling --candidates captions at this temperature instead of beam search")
    parser.add_argument("--deletions", action="store_true",
                        help="also score every one-word deletion of a beam candidate (settings 'with deletions')")
    parser.add_argument("--all-templates", action="store_true",
                        help="also read the channel under every generation template and average (settings 'mean over "
                             "templates'); default: the first template only, as rerank_captions does")
    parser.add_argument("--shape-check", action="store_true",
                        help="also sweep the weight of the shape question (settings 'shape check V')")
    parser.add_argument("--num", type=int, default=None, help="first N clips (default all)")
    parser.add_argument("--out", type=Path, required=True, help="JSON: the accuracy of every setting")
    parser.add_argument("--candidates-out", type=Path, default=None,
                        help="JSON lines: every clip's truth and scored candidates (default: not written)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    model = Divot.from_pretrained(args.model)
    records = [json.loads(line) for line in (args.clips / "metadata.jsonl").read_text().splitlines()][: args.num]
    templates = GENERATION_TEMPLATES if args.all_templates else GENERATION_TEMPLATES[:1]
    clips = [(rec["attributes"][0], candidates_of(model, args.clips / rec["video"], args.candidates, args.deletions,
                                                  templates, args.sample, args.shape_check))
             for rec in tqdm(records, desc="candidates")]
    sweep = {}
    settings = [("channel", g, False) for g in MAX_GAPS]
    settings += [("channel_mean", None, False)] if args.all_templates else []
    settings += [("channel", None, True)] if args.deletions else []
    checks = CHECK_WEIGHTS if args.shape_check else (0.0,)
    for (channel, gap, with_deletions), w, v in itertools.product(settings, WEIGHTS, checks):
        if v and (gap is not None or channel != "channel" or with_deletions):
            continue  # the shape check is swept over the channel weights only
        hits = {k: [] for k in ATTRIBUTES}  # per clip: was the picked caption right
        wrong = Counter()
        for truth, all_cands in clips:
            cands = [c for c in all_cands if with_deletions or c["source"] == "beam"]
            best = max(c["caption"] for c in cands)
            kept = [c for c in cands if gap is None or c["caption"] >= best - gap]
            said = parse_caption(max(kept, key=lambda c: c["caption"] + w * c[channel] + v * c["check"])["text"])
            for k in ATTRIBUTES:
                hits[k].append(said[k] == truth[k])
            if said["shape"] != truth["shape"]:
                wrong[f"{truth['colour']} {truth['shape']} -> {said['shape']}"] += 1
        key = f"weight {w:g}, max_gap {gap}" + (", mean over templates" if channel == "channel_mean" else "") \
            + (", with deletions" if with_deletions else "") + (f", shape check {v:g}" if v else "")
        sweep[key] = {k: sum(h) / len(clips) for k, h in hits.items()}
        sweep[key]["ci95"] = {k: [bootstrap_ci(h)[b] for b in ("ci_low", "ci_high")] for k, h in hits.items()}
        sweep[key]["wrong_shapes"] = dict(wrong.most_common())
        logger.info("%s: %s", key, " ".join(f"{k} {sweep[key][k]:.3f}" for k in ATTRIBUTES))
    oracle = sum(any(parse_caption(c["text"])["shape"] == t["shape"] for c in cands if c["source"] == "beam")
                 for t, cands in clips)
    result = {"clips": str(args.clips), "model": args.model, "num_clips": len(clips), "candidates": args.candidates,
              "proposal": "beam" if args.sample is None else f"sample, temperature {args.sample:g}",
              "mean_distinct_candidates": sum(len(c) for _, c in clips) / len(clips),
              "deletions": args.deletions, "shape_check": args.shape_check, "templates": list(templates),
              "oracle_shape": oracle / len(clips), "by_setting": sweep}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    if args.candidates_out is not None:
        args.candidates_out.parent.mkdir(parents=True, exist_ok=True)
        args.candidates_out.write_text("".join(json.dumps({"truth": t, "candidates": c}) + "\n" for t, c in clips))
    logger.info("oracle shape %.3f; written %s", result["oracle_shape"], args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
