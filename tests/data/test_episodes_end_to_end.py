"""The flow of docs/stories_from_episodes.md end to end on the CPU: shapes-world episodes (hard cuts at known
frames, slow cross-fades, short scenes) and three unreadable files -> ``divot data episodes`` (stitching with
the shapes-tiny tokenizer) -> ``divot data captions`` (shapes-tiny) -> ``divot data storylines`` (template) ->
token cache -> train/story.py (the story LLM, LoRA) and its de-tokenizer T2 fine-tuning, a couple of steps each
-> ``Divot.tell_story`` with the new story LLM and de-tokenizer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from divot.cli import main
from divot.data.shapes.world import parse_caption
from divot.data.stories import read_stories
from tests.data.test_episodes import write_bad_episodes

ROOT = Path(__file__).resolve().parents[2]
ASSETS = ROOT / "divot" / "assets" / "shapes-tiny"
pytest.importorskip("scenedetect", reason="the episodes extra: pip install 'divot[episodes]'")


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.slow
def test_episodes_to_a_story_model(tmp_path):
    from divot import Divot
    from divot.data.shapes.episodes import generate_episodes
    from divot.llm import DivotLLM
    from train.story import main as train_story

    truth = generate_episodes(tmp_path / "eps", 2, seed=4, num_scenes=4, fade_prob=0.5)
    assert sum(len(t["cuts"]) for t in truth.values()) == 4 and sum(len(t["fades"]) for t in truth.values()) == 2
    write_bad_episodes(tmp_path / "eps", tmp_path / "eps" / "episode_000.mp4")
    out = tmp_path / "clips"

    # 1. episodes -> clips: every cut within a frame, each fade at most one cut, the bad files counted
    assert main(["data", "episodes", str(tmp_path / "eps"), "--out", str(out), "--model", "shapes-tiny",
                 "--no-progress"]) == 0
    summary = json.loads((out / "episodes.json").read_text())
    assert (summary["num_split"], summary["num_unreadable"]) == (2, 3)
    assert summary["settings"]["stitch_threshold"] == 0.97 and summary["settings"]["tokenizer"] == "shapes-tiny"
    for name, t in truth.items():
        record = json.loads((out / "episodes" / f"{Path(name).stem}.json").read_text())
        cuts, fades = record["cuts"], [tuple(f) for f in t["fades"]]
        assert all(any(abs(c - cut) <= 1 for c in cuts) for cut in t["cuts"]), (name, cuts, t["cuts"])
        in_fade = {f: [c for c in cuts if f[0] - 1 <= c <= f[1] + 1] for f in fades}
        assert all(len(found) <= 1 for found in in_fade.values()), (name, cuts, fades)
        others = [c for c in cuts if not any(c in found for found in in_fade.values())]
        assert all(any(abs(c - cut) <= 1 for cut in t["cuts"]) for c in others), (name, cuts, t["cuts"])
        assert len(record["similarities"]) == len(record["shots"]) - 1
    clips = _jsonl(out / "metadata.jsonl")

    # 2. captions from the shapes-tiny model: one per clip, in the world's vocabulary
    assert main(["data", "captions", str(out), "--captioner", "shapes-tiny", "--no-progress"]) == 0
    captions = _jsonl(out / "captions.jsonl")
    assert len(captions) >= 0.8 * len(clips)
    named = [parse_caption(c["caption"]) for c in captions]
    assert sum(n["shape"] is not None and n["colour"] is not None for n in named) >= 0.8 * len(captions)
    info = json.loads((out / "captions.json").read_text())
    assert info["captioner"]["kind"] == "divot" and "caption prompt" in info["captioner"]["prompt"]

    # 3. storylines (template) -> a valid story file of DESIGN section 10
    assert main(["data", "storylines", str(out), "--segments", "2", "--group", "episode", "--no-progress"]) == 0
    stories = read_stories(out / "stories.jsonl")
    assert len(stories) >= 4 and all(len(s.segments) == 2 and s.segments[0].end is not None for s in stories)
    assert main(["data", "check-stories", str(out / "stories.jsonl")]) == 0

    # 4. the story LLM and the de-tokenizer learn a couple of steps on them
    assert main(["cache-features", "--tokenizer", str(ASSETS / "tokenizer"), "--videos", str(out / "stories.jsonl"),
                 "--out", str(tmp_path / "tokens"), "--device", "cpu", "--num-workers", "0", "--no-progress"]) == 0
    story_out = tmp_path / "story_llm"
    # (from the bundled story LLM: fine-tuning a story model further on new footage)
    assert train_story(["--config", str(ROOT / "configs/story/shapes_tiny.yaml"), f"model={ASSETS / 'story_llm'}",
                        f"output_dir={story_out}", "data.batch_size=2", "optim.max_steps=2", "optim.warmup_steps=1",
                        f"data.sources=[{{kind: story, annotations: '{out / 'stories.jsonl'}', "
                        f"tokens: '{tmp_path / 'tokens'}'}}]", "eval.every=0", "eval.stories=null",
                        "eval.story_tokens=null", "log_every=1", "checkpoint_every=2", "lora.r=4", "lora.alpha=4"]) == 0
    assert [m["step"] for m in _jsonl(story_out / "metrics.jsonl")] == [1, 2]
    detok_out = tmp_path / "detok"
    assert train_story(["--detokenizer", "--config", str(ROOT / "configs/story/detokenizer_shapes_tiny.yaml"),
                        f"tokenizer={ASSETS / 'tokenizer'}", f"detokenizer={ASSETS / 'detokenizer'}",
                        f"data.train={out / 'stories.jsonl'}", f"data.val={out / 'stories.jsonl'}",
                        f"output_dir={detok_out}", "data.batch_size=2", "optim.max_steps=2", "optim.warmup_steps=1",
                        "log_every=1", "eval.every=0", "eval.num_val=2", "eval.num_samples=2",
                        "eval.sample_steps=2"]) == 0

    # 5. tell_story uses the new story LLM (and renders with the fine-tuned de-tokenizer)
    model = Divot.from_parts(ASSETS / "tokenizer", ASSETS / "llm", detok_out / "detokenizer",
                             story_llm=story_out / "model", device="cpu")
    trained, before = DivotLLM.from_pretrained(story_out / "model"), DivotLLM.from_pretrained(ASSETS / "story_llm")
    assert torch.equal(model.story_llm.gmm_head.proj[0].weight, trained.gmm_head.proj[0].weight)
    assert not torch.equal(trained.gmm_head.proj[0].weight, before.gmm_head.proj[0].weight)  # it learned
    story = model.tell_story(stories[0].instruction, num_segments=2, seed=0, num_steps=2, greedy=True)
    assert story.settings["story_llm"] is True and len(story.videos) == 2 and story.texts[0]  # 2 steps: a start
