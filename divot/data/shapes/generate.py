"""Write a shapes-world dataset: mp4 clips, captions, EgoSchema / MSVD-QA question files and stories.

Layout under ``out_dir``::

    videos/<id>.mp4                 one clip per id (also the EgoSchema video folder: <q_uid>.mp4)
    metadata.jsonl                  {id, video, caption, attributes, split, seed} per clip
    egoschema/questions.json        [{q_uid, question, option 0 .. option 4}]
    egoschema/subset_answers.json   {q_uid: index of the correct option}
    msvd/test_q.json, test_a.json   Video-ChatGPT format, parallel lists (video_name = clip id)
    msvd/qa.json                    [{question, video_name, answer}]
    stories/<id>.mp4, stories.jsonl one video per story, segments with start / end seconds (DESIGN section 10)
    summary.json                    what ``generate_dataset`` returns

Every clip and story has its own seed (derived from ``seed`` and its index, recorded in the files), so any
item can be regenerated alone: ``rng = np.random.default_rng(item_seed)``, then ``sample_spec`` and
``render_clip`` (or ``sample_story``) with that rng, as below.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from divot.constants import DENSE_FPS, DENSE_FRAMES
from divot.data.shapes.story import StorySpec, render_story, sample_story
from divot.data.shapes.world import (
    COLOURS,
    MOTION_WORDS,
    MOTIONS,
    OBJECT_SIZE,
    SHAPES,
    ClipSpec,
    render_clip,
    sample_spec,
)
from divot.data.writers import write_video

logger = logging.getLogger(__name__)

NUM_OPTIONS = 5
_CLIPS, _STORIES = 0, 1  # seed streams


def item_seed(seed: int, stream: int, index: int) -> int:
    """The seed of item ``index`` of a stream (clips, stories) of a dataset generated with ``seed``."""
    return int(np.random.SeedSequence([seed, stream, index]).generate_state(1)[0])


def _reference(spec: ClipSpec, k: int, by: str) -> str:
    """How a question names object k: "the object" alone, else by its colour or its shape (both differ
    between the objects of a clip)."""
    if len(spec.objects) == 1:
        return "the object"
    obj = spec.objects[k]
    return f"the {obj.shape}" if by == "shape" else f"the {obj.colour} object"


def _multiple_choice(spec: ClipSpec, rng: np.random.Generator) -> tuple[str, list[str], int]:
    """One five-way question about a random attribute of a random object: (question, options, answer)."""
    k = int(rng.integers(len(spec.objects)))
    obj = spec.objects[k]
    kind = ("colour", "shape", "motion")[int(rng.integers(3))]
    if kind == "colour":
        question, vocab, answer = f"What colour is {_reference(spec, k, 'shape')}?", COLOURS, obj.colour
    elif kind == "shape":
        question, vocab, answer = f"What shape is {_reference(spec, k, 'colour')}?", SHAPES, obj.shape
    else:
        question, vocab, answer = f"What does {_reference(spec, k, 'colour')} do?", MOTIONS, obj.motion
    others = [v for v in vocab if v != answer]
    options = [answer] + [others[i] for i in rng.choice(len(others), NUM_OPTIONS - 1, replace=False)]
    order = rng.permutation(NUM_OPTIONS)
    options = [options[i] for i in order]
    return question, options, int(np.flatnonzero(order == 0)[0])


def _open_questions(spec: ClipSpec) -> list[tuple[str, str, str]]:
    """Single-word questions (question, answer, type) about every attribute of every object."""
    out = []
    for k, obj in enumerate(spec.objects):
        out.append((f"what colour is {_reference(spec, k, 'shape')}?", obj.colour, "colour"))
        out.append((f"what shape is {_reference(spec, k, 'colour')}?", obj.shape, "shape"))
        out.append((f"how does {_reference(spec, k, 'colour')} move?", MOTION_WORDS[obj.motion], "motion"))
    return out


def _story_record(story: StorySpec, story_id: str, video: str, clip_seconds: float, split: str, seed: int) -> dict:
    segments = [
        {"text": text, "video": video, "start": round(k * clip_seconds, 6), "end": round((k + 1) * clip_seconds, 6)}
        for k, text in enumerate(story.sentences())
    ]
    attributes = [[o.attributes() for o in story.clip_objects(k)] for k in range(len(segments))]
    return {"id": story_id, "instruction": story.instruction, "segments": segments,
            "attributes": attributes, "split": split, "seed": seed}


def _write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=1) + "\n")


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def generate_dataset(out_dir: str | Path, num: int, seed: int, held_out: bool = False, size: int = 32,
                     num_frames: int = DENSE_FRAMES, fps: float = DENSE_FPS, two_objects_prob: float = 0.0,
                     num_stories: int | None = None, object_size: float = OBJECT_SIZE,
                     progress: bool = True) -> dict:
    """Generate ``num`` clips (and stories) of the train or held-out split into ``out_dir``.

    Clips are ``num_frames`` frames of ``size`` x ``size`` px at ``fps``; a story is 3 such clips in one
    video. ``num_stories`` defaults to ``max(1, num // 4)`` (0 when ``num`` is 0). The same arguments give
    byte-identical JSON files and identical frames. Returns the summary (also written to summary.json):
    paths, counts and the arguments.
    """
    if num < 0 or int(num) != num:
        raise ValueError(f"num must be a non-negative integer, got {num}")
    if seed < 0 or int(seed) != seed:
        raise ValueError(f"seed must be a non-negative integer, got {seed}")
    if size < 8:
        raise ValueError(f"size must be at least 8 px, got {size}")
    if num_frames < 2:
        raise ValueError(f"num_frames must be at least 2, got {num_frames}")
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    if not 0.0 <= two_objects_prob <= 1.0:
        raise ValueError(f"two_objects_prob must be in [0, 1], got {two_objects_prob}")
    num_stories = (max(1, num // 4) if num else 0) if num_stories is None else num_stories
    if num_stories < 0:
        raise ValueError(f"num_stories must be non-negative, got {num_stories}")

    out = Path(out_dir)
    split = "held_out" if held_out else "train"
    (out / "videos").mkdir(parents=True, exist_ok=True)
    metadata, ego_questions, ego_answers = [], [], {}
    msvd_q, msvd_a, msvd_qa = [], [], []
    counts: dict[str, Counter] = {"colour": Counter(), "shape": Counter(), "motion": Counter()}

    for i in tqdm(range(num), desc=f"shapes clips ({split})", disable=not progress):
        clip_id = f"{split}_s{seed}_{i:06d}"
        clip_seed = item_seed(seed, _CLIPS, i)
        rng = np.random.default_rng(clip_seed)
        spec = sample_spec(rng, split, two_objects_prob)
        frames = render_clip(spec, size=size, num_frames=num_frames, rng=rng, object_size=object_size)
        video = f"videos/{clip_id}.mp4"
        write_video(frames, out / video, fps)
        attributes = [o.attributes() for o in spec.objects]
        for a in attributes:
            for key in counts:
                counts[key][a[key]] += 1
        metadata.append({"id": clip_id, "video": video, "caption": spec.caption, "attributes": attributes,
                         "split": split, "seed": clip_seed})

        question, options, answer = _multiple_choice(spec, rng)
        ego_questions.append({"q_uid": clip_id, "question": question,
                              **{f"option {j}": opt for j, opt in enumerate(options)}})
        ego_answers[clip_id] = answer
        for j, (q, a, kind) in enumerate(_open_questions(spec)):
            qid = f"{clip_id}_{j}"
            msvd_q.append({"video_name": clip_id, "question_id": qid, "question": q})
            msvd_a.append({"answer": a, "type": kind, "question_id": qid})
            msvd_qa.append({"question": q, "video_name": clip_id, "answer": a})

    stories = []
    clip_seconds = num_frames / fps
    for i in tqdm(range(num_stories), desc=f"shapes stories ({split})", disable=not progress):
        story_id = f"story_{split}_s{seed}_{i:06d}"
        story_seed = item_seed(seed, _STORIES, i)
        story = sample_story(np.random.default_rng(story_seed), split, object_size=object_size)
        video = f"stories/{story_id}.mp4"
        write_video(render_story(story, size=size, num_frames=num_frames), out / video, fps)
        stories.append(_story_record(story, story_id, video, clip_seconds, split, story_seed))

    paths = {
        "metadata": out / "metadata.jsonl",
        "video_dir": out / "videos",
        "egoschema_questions": out / "egoschema" / "questions.json",
        "egoschema_answers": out / "egoschema" / "subset_answers.json",
        "msvd_questions": out / "msvd" / "test_q.json",
        "msvd_answers": out / "msvd" / "test_a.json",
        "msvd_qa": out / "msvd" / "qa.json",
        "stories": out / "stories.jsonl",
    }
    _write_jsonl(paths["metadata"], metadata)
    _write_json(paths["egoschema_questions"], ego_questions)
    _write_json(paths["egoschema_answers"], ego_answers)
    _write_json(paths["msvd_questions"], msvd_q)
    _write_json(paths["msvd_answers"], msvd_a)
    _write_json(paths["msvd_qa"], msvd_qa)
    _write_jsonl(paths["stories"], stories)

    summary = {
        "out_dir": str(out), "split": split, "seed": seed, "num_clips": num, "num_stories": num_stories,
        "num_questions": len(ego_questions), "num_open_questions": len(msvd_q),
        "size": size, "num_frames": num_frames, "fps": fps, "two_objects_prob": two_objects_prob,
        "object_size": object_size, "video_ext": ".mp4",
        **{k: str(p) for k, p in paths.items()},
        "counts": {k: dict(sorted(c.items())) for k, c in counts.items()},
    }
    _write_json(out / "summary.json", summary)
    logger.info("wrote %d %s clips and %d stories to %s", num, split, num_stories, out)
    return summary
