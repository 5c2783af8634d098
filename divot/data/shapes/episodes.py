"""Shapes-world "episodes": long videos of several scenes joined by hard cuts and slow cross-fades, with the
ground truth (cut frames, fade spans, each scene's story) -- test footage for ``divot data episodes``.

A scene is a shapes-world story (``sample_story``: one subject through 2-second clips) on its own plain
background, as the places of a cartoon differ from scene to scene; consecutive scenes alternate between a grey
and a dark hue, so they never share a background.
Scenes are joined by a hard cut (the first frame of the next scene follows the last of this one), or now and
then by a cross-fade: the last ``fade_frames`` of a scene blend linearly into the first ones of the next. A
short scene (half a clip) now and then tests the splitter's merging of shots shorter than a clip.
Frame numbers in the ground truth are native frames of the written file, counted from 0; a cut at frame c means
frame c is the first frame of the new scene.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from divot.data.shapes.story import render_story, sample_story

CLIP_SECONDS = 2.0
# Plain dark backgrounds, from two groups that scenes alternate between: greys and dark hues. A cut from one
# group to the other changes the frame's mean HSV channels by more than 120 (PySceneDetect's ContentDetector
# score; its default threshold is 27), while the shapes-tiny model, which saw black backgrounds only, still
# captions all of them (none is red: OpenCV's hue wraps there, 179 -> 0, and noise would look like a cut).
GREYS: tuple[tuple[int, int, int], ...] = ((0, 0, 0), (48, 48, 48))
HUES: tuple[tuple[int, int, int], ...] = ((24, 0, 24), (0, 24, 24), (0, 0, 30))


@dataclasses.dataclass(frozen=True)
class EpisodeTruth:
    """Where an episode's scenes start and how they join. ``cuts``: first frames of scenes after a hard cut;
    ``fades``: ``[first, last + 1)`` frame spans of the cross-fades; ``scenes``: per scene its first frame,
    frame count, background, instruction and sentences."""

    num_frames: int
    fps: float
    cuts: list[int]
    fades: list[tuple[int, int]]
    scenes: list[dict]

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


def render_episode(rng: np.random.Generator, num_scenes: int = 5, size: int = 64, fps: float = 16.0,
                   max_clips: int = 3, fade_prob: float = 0.25, fade_seconds: float = 1.5,
                   short_prob: float = 0.15) -> tuple[np.ndarray, EpisodeTruth]:
    """Frames uint8 (t, size, size, 3) of one episode of ``num_scenes`` scenes and its ``EpisodeTruth``.

    Each scene is 1 to ``max_clips`` clips of 2 seconds (or, with ``short_prob``, one second); each join is a
    cross-fade of ``fade_seconds`` with ``fade_prob`` (where both scenes are at least twice as long), else a cut."""
    if num_scenes < 1:
        raise ValueError(f"num_scenes must be >= 1, got {num_scenes}")
    clip_frames = round(CLIP_SECONDS * fps)
    fade_frames = max(2, round(fade_seconds * fps))
    if clip_frames < 4 or fade_frames >= clip_frames:
        raise ValueError(f"fps={fps} with fade_seconds={fade_seconds}: a fade must be shorter than a 2 s clip")
    pieces, scenes, cuts, fades = [], [], [], []
    total, first_group = 0, int(rng.integers(2))
    for k in range(num_scenes):
        short = k > 0 and rng.random() < short_prob
        num_clips = 1 if short else int(rng.integers(1, max_clips + 1))
        story = sample_story(rng, num_segments=num_clips, appear_prob=0.0)  # no object pops in: that looks like a cut
        group = (GREYS, HUES)[(first_group + k) % 2]
        background = group[int(rng.integers(len(group)))]
        frames = render_story(dataclasses.replace(story, background=background), size, clip_frames)
        if short:
            frames = frames[: clip_frames // 2]
        start = total
        if k > 0:
            # a fade needs room on both sides (a scene may fade in and out): twice its length each
            room = min(len(pieces[-1]), len(frames)) >= 2 * fade_frames
            fade = room and rng.random() < fade_prob
            if fade:  # the last fade_frames of the previous scene blend into this scene's first ones
                prev = pieces[-1]
                alpha = (np.arange(1, fade_frames + 1, dtype=np.float32) / (fade_frames + 1))[:, None, None, None]
                blend = (1 - alpha) * prev[-fade_frames:] + alpha * frames[:fade_frames]  # (fade, h, w, 3)
                pieces[-1] = prev[:-fade_frames]
                frames = np.concatenate([np.clip(blend + 0.5, 0, 255).astype(np.uint8), frames[fade_frames:]])
                start = total - fade_frames
                fades.append((start, start + fade_frames))
            else:
                cuts.append(start)
        total = start + len(frames)
        pieces.append(frames)
        scenes.append({"start_frame": start, "num_frames": len(frames), "background": list(background),
                       "instruction": story.instruction, "sentences": story.sentences()[:num_clips],
                       "short": short})
    video = np.concatenate(pieces)  # (t, size, size, 3)
    return video, EpisodeTruth(len(video), float(fps), cuts, fades, scenes)


def generate_episodes(out_dir: str | Path, num: int, seed: int = 0, num_scenes: int = 5, size: int = 64,
                      fps: float = 16.0, **options) -> dict:
    """Write ``num`` episodes ``episode_NNN.mp4`` (H.264) into ``out_dir`` and ``truth.json`` (episode file name
    -> ``EpisodeTruth``); ``options`` go to ``render_episode``. Returns the truth mapping."""
    from divot.data.writers import write_video

    if num < 1:
        raise ValueError(f"num must be >= 1, got {num}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    truth = {}
    for i in range(num):
        frames, ep = render_episode(np.random.default_rng([seed, i]), num_scenes, size, fps, **options)
        name = f"episode_{i:03d}.mp4"
        write_video(frames, out_dir / name, fps=fps)
        truth[name] = ep.to_json()
    (out_dir / "truth.json").write_text(json.dumps(truth, indent=1) + "\n")
    return truth
