"""Shapes-world checks of a whole Divot model (the demo's numbers; DESIGN section 9).

* ``caption_scores``: caption each clip (greedy, and optionally by noisy-channel reranking) and read the
  colour / shape / motion words back.
* ``generation_scores``: generate a clip for each prompt "a {colour} {shape} {motion}" and measure its pixels
  (dominant colour, shape template, centroid motion) against what the prompt asked for.
* ``story_scores``: tell a story for each instruction "Generate a story about a {colour} {shape}.", check its
  structure and measure each clip against its own sentence (``divot.eval.shapes_stories``).

Both return ``{"rows": [...], "accuracy": {attribute: fraction}, "chance": {...}}``; rows carry what the
report shows (paths, the text, the measured attributes). Generation and stories pass every sampling setting to
the model explicitly (defaults: ``SHAPES_DEMO``, what a shapes model's generation.json says) and record them under
``"settings"``, so the numbers do not depend on the model directory's generation.json.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from divot.chat.generation_defaults import SHAPES_DEMO
from divot.data.shapes.measure import measure_clip
from divot.data.shapes.world import COLOURS, MOTION_DIRECTIONS, MOTIONS, SHAPES, parse_caption, split_combos
from divot.eval.bootstrap import bootstrap_ci
from divot.llm.rerank import AnswerCheck

logger = logging.getLogger(__name__)

ATTRIBUTES = ("colour", "shape", "motion")
# the shapes world's open shape question of a one-object clip (divot.data.shapes.generate), as a rerank check
SHAPE_CHECK = AnswerCheck("what shape is the object?", SHAPES)
CHANCE = {"colour": 1 / len(COLOURS), "shape": 1 / len(SHAPES), "motion": 1 / len(MOTIONS)}


def _accuracy(rows: list[dict], keys: tuple[str, ...], field: str = "correct") -> dict[str, float]:
    return {k: float(np.mean([r[field][k] for r in rows])) if rows else 0.0 for k in keys}


def caption_scores(model, records: list[dict], root: Path, progress: bool = True, rerank: int = 0,
                   channel_weight: float = 0.1, check_weight: float = 0.0) -> dict:
    """Caption every clip of ``records`` (shapes ``metadata.jsonl`` rows; videos relative to ``root``): greedy, and
    with ``rerank`` > 0 also by noisy-channel reranking of that many beam candidates (``Divot.caption``), which
    then gives ``accuracy`` while the greedy captions' accuracy stays beside it as ``accuracy_greedy``;
    ``check_weight`` > 0 adds the shape question (``SHAPE_CHECK``) to the reranking."""
    checks = [SHAPE_CHECK] if check_weight > 0 else []
    rows = []
    for rec in tqdm(records, desc="captions", disable=not progress):
        truth = rec["attributes"][0]
        video = root / rec["video"]
        greedy = model.caption(video, greedy=True)
        text = (model.caption(video, rerank=rerank, channel_weight=channel_weight, checks=checks,
                              check_weight=check_weight) if rerank else greedy)
        row = {"id": rec["id"], "video": rec["video"], "truth": rec["caption"], "caption": text}
        for key, said_text in (("", text), ("_greedy", greedy)):
            said = parse_caption(said_text)
            row["parsed" + key] = said
            row["correct" + key] = {k: said[k] == truth[k] for k in ATTRIBUTES}
        if rerank:
            row["greedy"] = greedy
        rows.append(row)
    method = f"noisy-channel rerank of {rerank} beam captions, channel weight {channel_weight:g}"
    method += f", shape question weight {check_weight:g}" if checks else ""
    out = {"rows": rows, "chance": CHANCE, "method": method if rerank else "greedy"}
    for key in ("", "_greedy"):
        acc = _accuracy(rows, ATTRIBUTES, "correct" + key)
        acc["all"] = float(np.mean([all(r["correct" + key].values()) for r in rows])) if rows else 0.0
        out["accuracy" + key] = acc
    out["ci95"] = caption_intervals(rows)
    return out


def caption_intervals(rows: list[dict], field: str = "correct") -> dict[str, list[float | None]]:
    """95% percentile-bootstrap interval ``[low, high]`` of each caption accuracy (the attributes and "all")
    over the clips of ``rows`` (``caption_scores`` rows): with 100 clips a split, an accuracy of 0.90 is only
    known to about +-0.06."""
    per_clip = {k: [r[field][k] for r in rows] for k in ATTRIBUTES}
    per_clip["all"] = [all(r[field].values()) for r in rows]
    out = {}
    for k, hits in per_clip.items():
        ci = bootstrap_ci(hits)
        out[k] = [ci["ci_low"], ci["ci_high"]]
    return out


def generation_prompts(num: int, seed: int, motions: tuple[str, ...] = MOTIONS) -> list[dict]:
    """``num`` prompts with random colour-shape pairs of the training split, going through ``motions`` in turn."""
    rng = np.random.default_rng(seed)
    pairs = split_combos("train")  # (colour, shape) pairs the model was trained on
    out = []
    for i in range(num):
        colour, shape = pairs[int(rng.integers(len(pairs)))]
        motion = motions[i % len(motions)]
        out.append({"colour": colour, "shape": shape, "motion": motion, "prompt": f"a {colour} {shape} {motion}"})
    return out


def generation_scores(model, prompts: list[dict], out_dir: Path, seed: int = 0,
                      num_steps: int = SHAPES_DEMO.num_steps, guidance_scale: float = SHAPES_DEMO.guidance_scale,
                      mode: str = "sample", progress: bool = True, sampler: str = SHAPES_DEMO.sampler,
                      guidance_rescale: float = SHAPES_DEMO.guidance_rescale, eta: float = SHAPES_DEMO.eta) -> dict:
    """Generate one clip per prompt (seed ``seed + i``, GMM ``mode``; the instruction prompt with the first
    template, ``<vid>`` forced), save it as ``out_dir/gen_{i}.gif``, measure it."""
    settings = {"sampler": sampler, "num_steps": num_steps, "guidance_scale": guidance_scale,
                "guidance_rescale": guidance_rescale, "eta": eta, "prompt_format": "instruct", "open_video": "force",
                "template": SHAPES_DEMO.template}
    rows = []
    for i, p in enumerate(tqdm(prompts, desc="generation", disable=not progress)):
        video = model.generate_video(p["prompt"], seed=seed + i, mode=mode, **settings)
        path = video.save(Path(out_dir) / f"gen_{i:03d}.gif")
        m = measure_clip(video.to_uint8())
        got = {"colour": m.colour, "shape": m.shape, "motion": m.motion}
        rows.append({"prompt": p["prompt"], "gif": Path(path).name, "measured": got,
                     "correct": {k: got[k] == p[k] for k in ATTRIBUTES}})
    return {"rows": rows, "accuracy": _accuracy(rows, ATTRIBUTES), "chance": CHANCE, "mode": mode,
            "settings": settings, "motion_by_kind": motion_by_kind(rows, prompts)}


def motion_by_kind(rows: list[dict], prompts: list[dict]) -> dict[str, dict]:
    """Motion accuracy over the prompts that ask for a direction (left / right / up / down) and over the
    others (stays still, grows, shrinks): ``{kind: {"n", "accuracy"}}``."""
    out = {}
    for kind, keep in (("direction", True), ("still or size", False)):
        hits = [r["correct"]["motion"] for r, p in zip(rows, prompts, strict=True)
                if (p["motion"] in MOTION_DIRECTIONS) == keep]
        out[kind] = {"n": len(hits), "accuracy": float(np.mean(hits)) if hits else None}
    return out


def story_instructions(num: int, seed: int, split: str = "train") -> list[str]:
    """``num`` story instructions about random objects of ``split`` (the shapes world's story sampler)."""
    from divot.data.shapes.story import sample_story

    return [sample_story(np.random.default_rng([seed, i]), split).instruction for i in range(num)]


def story_scores(model, instructions: list[str], out_dir: Path, seed: int = 0,
                 num_steps: int = SHAPES_DEMO.num_steps, guidance_scale: float = SHAPES_DEMO.guidance_scale,
                 num_segments: int = 3, mode: str = "sample", progress: bool = True,
                 sampler: str = SHAPES_DEMO.sampler, guidance_rescale: float = SHAPES_DEMO.guidance_rescale,
                 eta: float = SHAPES_DEMO.eta) -> dict:
    """Tell one story per instruction (seed ``seed + i``, clip tokens by GMM ``mode``), save its storyboard under ``out_dir/story_{i}/``,
    score its structure and clips. ``{"rows", "summary", "by_pairs"}`` (``divot.eval.shapes_stories.summarize``
    over all stories, and over those about training / held-out colour-shape pairs)."""
    from divot.eval.shapes_stories import instruction_subject, score_story, summarize

    settings = {"sampler": sampler, "num_steps": num_steps, "guidance_scale": guidance_scale,
                "guidance_rescale": guidance_rescale, "eta": eta}
    rows = []
    for i, instruction in enumerate(tqdm(instructions, desc="stories", disable=not progress)):
        story = model.tell_story(instruction, num_segments, seed=seed + i, mode=mode, **settings)
        folder = Path(out_dir) / f"story_{i:03d}"
        story.save(folder, formats=("gif",))
        score = score_story(instruction, story.texts, [v.frames for v in story.videos])
        score["gifs"] = [f"{folder.name}/segment_{k:02d}.gif" for k in range(1, len(story) + 1)]
        rows.append(score)
    held = set(split_combos("held_out"))
    by_pairs = {"train": [r for r in rows if instruction_subject(r["instruction"]) not in held],
                "held_out": [r for r in rows if instruction_subject(r["instruction"]) in held]}
    return {"rows": rows, "summary": summarize(rows), "settings": settings,
            "by_pairs": {k: summarize(v) for k, v in by_pairs.items() if v}}
