"""Checking generated shapes-world stories without a human (DESIGN section 9, the story structure of
``divot.data.shapes.story``).

Structure: the first sentence names the instruction's subject ("a red circle moves left."), every later one is
"then it <motion>.", "then a <colour> <shape> appears." (at most once) or, after that, "then the <subject>
<motion>.": the object named first is the one the later sentences refer to. Clips: each rendered clip is
measured following the subject's colour (``measure_clip(colour=...)``); the clip matches its sentence when
the subject's colour is there and, for sentences that name a motion, the measured motion is that motion.
"""

from __future__ import annotations

import re

from divot.data.shapes.measure import measure_clip
from divot.data.shapes.world import COLOURS, MOTIONS, SHAPES

_NOUN = rf"(?P<colour>{'|'.join(COLOURS)}) (?P<shape>{'|'.join(SHAPES)})"
_MOTION = rf"(?P<motion>{'|'.join(MOTIONS)})"
_FIRST = re.compile(rf"^a {_NOUN} {_MOTION}\.?$")
_IT = re.compile(rf"^then it {_MOTION}\.?$")
_APPEARS = re.compile(rf"^then a {_NOUN} appears\.?$")
_THE = re.compile(rf"^then the {_NOUN} {_MOTION}\.?$")
_SUBJECT = re.compile(rf"about an? {_NOUN}")


def instruction_subject(instruction: str) -> tuple[str, str] | None:
    """(colour, shape) named by "Generate a story about a red circle.", or None."""
    m = _SUBJECT.search(instruction.lower())
    return (m["colour"], m["shape"]) if m else None


def parse_story_texts(texts: list[str]) -> dict:
    """Per sentence: its kind (first / it / appears / the / other) and what it names; and whether the whole
    story follows the trained structure with one subject."""
    parsed, subject, appeared, ok = [], None, False, bool(texts)
    for k, raw in enumerate(texts):
        text = raw.strip().lower()
        entry = {"text": raw, "kind": "other", "colour": None, "shape": None, "motion": None}
        patterns = [("first", _FIRST)] if k == 0 else [("it", _IT), ("appears", _APPEARS), ("the", _THE)]
        for kind, pattern in patterns:
            m = pattern.match(text)
            if m:
                entry.update(kind=kind, **{g: m.groupdict().get(g) for g in ("colour", "shape", "motion")})
                break
        kind = entry["kind"]
        if kind == "first":
            subject = (entry["colour"], entry["shape"])
        elif kind == "appears":
            ok &= not appeared and (entry["colour"], entry["shape"]) != subject
            appeared = True
        elif kind == "the":
            ok &= appeared and (entry["colour"], entry["shape"]) == subject
        elif kind == "it":
            ok &= not appeared  # after a second object, "it" would be ambiguous: the data never says it
        ok &= kind != "other"
        parsed.append(entry)
    return {"sentences": parsed, "subject": subject, "structured": bool(ok)}


def score_story(instruction: str, texts: list[str], videos) -> dict:
    """Structure and pixel checks of one generated story (``videos``: one clip per text, any frames layout
    ``measure_clip`` takes)."""
    info = parse_story_texts(texts)
    wanted = instruction_subject(instruction)
    subject = info["subject"] or wanted
    clips = []
    for entry, frames in zip(info["sentences"], videos, strict=True):
        m = measure_clip(frames, colour=subject[0] if subject else None)
        colour_ok = subject is not None and m.colour == subject[0]
        motion = entry["motion"] if entry["kind"] in ("first", "it", "the") else None
        clips.append({"measured_colour": m.colour, "measured_motion": m.motion, "colour_ok": colour_ok,
                      "motion": motion, "motion_ok": motion is not None and m.motion == motion})
    return {"instruction": instruction, "texts": texts, "structured": info["structured"],
            "follows_instruction": wanted is not None and info["subject"] == wanted, "clips": clips}


def summarize(scores: list[dict]) -> dict:
    """Rates over stories (structure, subject) and over clips (colour, motion where a motion is named)."""
    clips = [c for s in scores for c in s["clips"]]
    moving = [c for c in clips if c["motion"] is not None]
    n = max(len(scores), 1)
    return {
        "num_stories": len(scores), "num_clips": len(clips),
        "structured": sum(s["structured"] for s in scores) / n,
        "follows_instruction": sum(s["follows_instruction"] for s in scores) / n,
        "clip_colour": sum(c["colour_ok"] for c in clips) / max(len(clips), 1),
        "clip_motion": sum(c["motion_ok"] for c in moving) / max(len(moving), 1),
        "motion_chance": 1 / len(MOTIONS),
    }
