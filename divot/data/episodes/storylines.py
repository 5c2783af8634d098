"""Stories from captions (``divot data storylines``): K consecutive captioned clips -> one story row of DESIGN
section 10, ``{"instruction", "segments": [{"text", "video", "start", "end"}, ...]}``, one sentence per clip.

Clips are consecutive when they follow each other in one episode (clip index + 1) and, by default, in one
scene (``group="scene"``: shots stitched by ``divot data episodes``, or single shots without stitching;
``group="episode"`` lets stories cross scene boundaries). Each run of consecutive clips gives
``len // K`` stories; a shorter tail is dropped.

Two writers:
- ``TemplateStoryliner`` (deterministic, what the tests use): the instruction ``TEMPLATE_INSTRUCTION`` with the
  first caption, the sentences the captions themselves ("then ..." from the second on);
- ``OpenAIStoryliner``: an OpenAI-compatible text endpoint given ``SYSTEM_PROMPT`` and ``USER_PROMPT`` (the
  numbered captions), answering JSON ``{"instruction": ..., "sentences": [K strings]}``. A reply that does not
  parse or has the wrong number of sentences is counted and its story left out.
Every row is checked by the story reader's own parser before it is written and the written file is read back
with ``read_stories``. ``stories.json`` records the writer (its prompts, the model the server reported), counts
and time.
"""

from __future__ import annotations

import json
import logging
import re
import time
from pathlib import Path

from divot.openai_chat import ChatClient

logger = logging.getLogger(__name__)

STORIES = "stories.jsonl"  # its summary: the same name with .json
GROUPS = ("scene", "episode")
TEMPLATE_INSTRUCTION = "Generate a story that begins: {first}."
SYSTEM_PROMPT = "You write storylines for short video clips. You answer with JSON only."
USER_PROMPT = (
    "Here are captions of {k} consecutive 2-second clips of one video, in order:\n{captions}\n\n"
    "Write the story these clips tell: an instruction asking for the story (one sentence beginning with "
    "\"Generate a story about\") and exactly {k} sentences, sentence i telling what happens in clip i, each "
    "following on from the one before. Answer with JSON only, in this form: "
    "{{\"instruction\": \"...\", \"sentences\": [\"...\", ...]}}"
)


class StorylineError(ValueError):
    """A storyline writer's reply that cannot be used (not JSON, wrong number of sentences, empty text)."""


def _sentence(text: str) -> str:
    text = " ".join(text.split())
    return text if text.endswith((".", "!", "?")) else text + "."


def _clause(text: str) -> str:
    """A caption as the middle of a sentence: first letter lower-cased (unless an acronym), no final full stop."""
    text = " ".join(text.split()).rstrip(".")
    first = text.split(" ", 1)[0]
    return text if len(first) > 1 and first.isupper() else text[:1].lower() + text[1:]


class TemplateStoryliner:
    """Instruction and sentences from the captions alone (deterministic)."""

    key = "template"

    @property
    def identity(self) -> dict:
        return {"kind": "template", "instruction": TEMPLATE_INSTRUCTION,
                "sentences": "clip 1: its caption; clip k > 1: 'then ' + its caption; each ends in a full stop"}

    def write(self, captions: list[str]) -> tuple[str, list[str]]:
        instruction = TEMPLATE_INSTRUCTION.format(first=_clause(captions[0]))
        sentences = [_sentence(captions[0])] + [_sentence("then " + _clause(c)) for c in captions[1:]]
        return instruction, sentences


def parse_storyline(reply: str, k: int) -> tuple[str, list[str]]:
    """``{"instruction": str, "sentences": [k str]}`` from a reply (a ```json fence or text around it is
    tolerated); ``StorylineError`` otherwise."""
    match = re.search(r"\{.*\}", reply, re.DOTALL)
    try:
        data = json.loads(match.group(0)) if match else None
    except json.JSONDecodeError:
        data = None
    if not isinstance(data, dict):
        raise StorylineError(f"the reply is not a JSON object: {reply[:200]!r}")
    instruction, sentences = data.get("instruction"), data.get("sentences")
    if not isinstance(instruction, str) or not instruction.strip():
        raise StorylineError(f"'instruction' must be a non-empty string, got {instruction!r}")
    if not isinstance(sentences, list) or len(sentences) != k or \
            not all(isinstance(s, str) and s.strip() for s in sentences):
        raise StorylineError(f"'sentences' must be {k} non-empty strings, got {sentences!r:.200}")
    return " ".join(instruction.split()), [_sentence(s) for s in sentences]


class OpenAIStoryliner:
    """Storylines from an OpenAI-compatible chat endpoint (see the module docstring)."""

    def __init__(self, url: str, model: str, api_key_env: str | None = "OPENAI_API_KEY", max_tokens: int = 400):
        self.client = ChatClient(url, model, api_key_env=api_key_env, max_tokens=max_tokens)
        self.key = f"openai:{model}@{self.client.url}"

    @property
    def identity(self) -> dict:
        return {**self.client.identity, "system_prompt": SYSTEM_PROMPT, "user_prompt": USER_PROMPT}

    def messages(self, captions: list[str]) -> list[dict]:
        numbered = "\n".join(f"{i}. {c}" for i, c in enumerate(captions, start=1))
        return [{"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": USER_PROMPT.format(k=len(captions), captions=numbered)}]

    def write(self, captions: list[str]) -> tuple[str, list[str]]:
        return parse_storyline(self.client.complete(self.messages(captions)), len(captions))


def story_groups(rows: list[dict], k: int, group: str = "scene") -> list[list[dict]]:
    """Runs of ``k`` consecutive captioned clips (see the module docstring), in order."""
    if k < 1:
        raise ValueError(f"segments per story must be >= 1, got {k}")
    if group not in GROUPS:
        raise ValueError(f"group must be one of {GROUPS}, got {group!r}")
    groups, run = [], []
    for row in rows:
        prev = run[-1] if run else None
        follows = prev is not None and row["episode"] == prev["episode"] and row["clip"] == prev["clip"] + 1 \
            and (group == "episode" or row["scene"] == prev["scene"])
        run = [*run, row] if follows else [row]
        if len(run) == k:
            groups.append(run)
            run = []
    return groups


def write_storylines(out_dir: str | Path, storyliner, segments: int = 3, group: str = "scene",
                     out: str | Path | None = None, progress: bool = True) -> dict:
    """Stories from ``out_dir/captions.jsonl`` -> ``out`` (default ``out_dir/stories.jsonl``) and
    its summary, the same name with ``.json`` (returned)."""
    from tqdm import tqdm

    from divot.data.episodes.captions import CAPTIONS, read_clip_rows
    from divot.data.stories import parse_story, read_stories
    from divot.hub import atomic_write_text

    out_dir = Path(out_dir)
    out = Path(out) if out is not None else out_dir / STORIES
    if out.suffix != ".jsonl":
        raise ValueError(f"the story file must be a .jsonl file, got {out}")
    rows = [r for r in read_clip_rows(out_dir / CAPTIONS) if r.get("caption")]
    groups = story_groups(rows, segments, group)
    if not groups:
        raise ValueError(f"{out_dir / CAPTIONS}: no run of {segments} consecutive captioned clips "
                         f"(grouped by {group}); lower --segments or use --group episode")
    started, lines, failed, per_episode = time.perf_counter(), [], [], {}
    for clips in tqdm(groups, desc="storylines", unit="story", disable=not progress):
        try:
            instruction, sentences = storyliner.write([c["caption"] for c in clips])
        except StorylineError as err:
            logger.warning("no story for clips %s: %s", [c["id"] for c in clips], err)
            failed.append({"clips": [c["id"] for c in clips], "reason": str(err)})
            continue
        episode = clips[0]["episode"]
        n = per_episode[episode] = per_episode.get(episode, -1) + 1
        record = {"id": f"{episode}_s{n:03d}", "instruction": instruction,
                  "segments": [{"text": text, "video": c["video"], "start": c["start"], "end": c["end"]}
                               for text, c in zip(sentences, clips, strict=True)],
                  "episode": episode, "clips": [c["id"] for c in clips], "storyline": storyliner.key}
        parse_story(record, f"story of clips {record['clips']}", out.parent, record["id"])  # the reader's checks
        lines.append(json.dumps(record) + "\n")
    if not lines:
        raise ValueError(f"every storyline failed ({len(failed)}); see the warnings above")
    atomic_write_text(out, "".join(lines))
    stories = read_stories(out)  # the file as training will read it
    summary = {"stories": str(out.resolve()), "storyline": storyliner.identity, "segments": segments,
               "group": group, "num_groups": len(groups), "num_stories": len(stories),
               "num_failed": len(failed), "failed": failed, "seconds": round(time.perf_counter() - started, 3)}
    atomic_write_text(out.with_suffix(".json"), json.dumps(summary, indent=1) + "\n")
    return summary
