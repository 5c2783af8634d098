"""``Story``: what ``Divot.tell_story`` returns; texts and one ``Video`` per segment, saved as a storyboard.

    story = model.tell_story("Generate a story about a red circle.", num_segments=3, seed=0)
    story.texts                    # ['a red circle moves left.', 'then it moves up.', ...]
    story.videos[0].save("1.gif")
    story.save("outputs/story")    # storyboard.html + segment_01.gif/.mp4 ... + story.json
    story                          # in Jupyter: the storyboard inline

    for item in model.tell_story("Generate a story about a red circle.", stream=True):
        ...                        # str (a segment's text), then Video (its clip), then the next text ...
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch

from divot.chat.video import Video

_STYLE = ("body{font-family:sans-serif;margin:2em;color:#222} .board{display:flex;flex-wrap:wrap;gap:1.2em} "
          ".seg{width:260px} .seg img{image-rendering:pixelated;width:256px;height:256px;border:1px solid #ccc} "
          ".seg p{margin:.4em 0} .muted{color:#888;font-size:.85em}")


@dataclass
class Story:
    """A generated story: ``instruction``, ``texts`` (one per segment), ``videos`` (one ``Video`` each),
    ``tokens`` (segments, q, d) the clip tokens the videos were rendered from, and the generation settings."""

    instruction: str
    texts: list[str]
    videos: list[Video]
    tokens: torch.Tensor
    settings: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.texts)

    def __iter__(self):
        return iter(zip(self.texts, self.videos, strict=True))

    def save(self, directory: str | Path, formats: tuple[str, ...] = ("gif", "mp4")) -> Path:
        """Write ``segment_NN.<format>`` for each segment and format, ``story.json`` and ``storyboard.html``
        (which shows the GIFs, or the first format written). Returns the storyboard's path."""
        if not formats:
            raise ValueError("formats is empty: give at least one of gif, mp4, webm ...")
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        segments = []
        for k, (text, video) in enumerate(self, start=1):
            files = {fmt: video.save(directory / f"segment_{k:02d}.{fmt}").name for fmt in formats}
            segments.append({"text": text, "files": files, "frames": len(video), "fps": video.fps})
        record = {"instruction": self.instruction, "segments": segments, "settings": self.settings}
        (directory / "story.json").write_text(json.dumps(record, indent=1) + "\n")
        shown = "gif" if "gif" in formats else formats[0]
        board = directory / "storyboard.html"
        board.write_text(self._html([s["files"][shown] for s in segments], video_tag=shown != "gif"))
        return board

    def _html(self, sources: list[str], video_tag: bool = False) -> str:
        e = html.escape
        cells = []
        for k, (text, src) in enumerate(zip(self.texts, sources, strict=True), start=1):
            media = (f'<video src="{e(src)}" autoplay loop muted width="256"></video>' if video_tag
                     else f'<img src="{e(src)}" alt="segment {k}">')
            cells.append(f'<div class="seg">{media}<p><b>{k}.</b> {e(text) or "<i>(no text)</i>"}</p></div>')
        settings = ", ".join(f"{k}={v}" for k, v in self.settings.items())
        return (f"<!doctype html><html><head><meta charset='utf-8'><title>{e(self.instruction)}</title>"
                f"<style>{_STYLE}</style></head><body><h2>{e(self.instruction)}</h2>"
                f"<div class='board'>{''.join(cells)}</div><p class='muted'>{e(settings)}</p></body></html>")

    def _repr_html_(self) -> str:
        sources = ["data:image/gif;base64," + base64.b64encode(v.to_gif_bytes()).decode("ascii") for v in self.videos]
        return self._html(sources)

    def __repr__(self) -> str:
        return f"Story({self.instruction!r}, {len(self)} segments: {self.texts!r})"


def stream_story(model, segments, *, seed: int = 0, progress: bool = False, **rendering) -> Iterator[str | Video]:
    """What ``Divot.tell_story(stream=True)`` returns: for each ``StorySegment`` of ``segments`` (from
    ``divot.llm.story.story_segments``), its text as soon as it is written, then its clip rendered by
    ``model.render`` (noise seeded by ``seed``; ``rendering``: its sampler settings)."""
    for segment in segments:
        yield segment.text
        yield model.render(segment.tokens[None], seed=seed, progress=progress, **rendering)[0]
