"""The Story tab's storyboard: HTML for the segments written so far, each a text and (once rendered) its clip as
an inline animated GIF. Stable ids and classes for a browser test: ``story-segment-N`` (N from 1) on each
segment, ``divot-story-text`` on its text, ``divot-story-clip`` on its clip, ``divot-story-pending`` on the
placeholder shown while the clip renders."""

from __future__ import annotations

import base64
import html

_STYLE = ("<style>.divot-board{display:flex;flex-wrap:wrap;gap:1em} .divot-segment{width:200px} "
          ".divot-story-clip{image-rendering:pixelated;width:192px;height:192px;border:1px solid #ccc} "
          ".divot-story-pending{width:192px;height:192px;display:flex;align-items:center;justify-content:center;"
          "border:1px dashed #bbb;color:#888} .divot-story-text{margin:.4em 0}</style>")


def board_html(texts: list[str], gifs: list[bytes]) -> str:
    """The storyboard for ``texts`` (one per segment written) and ``gifs`` (the GIF bytes of the clips rendered
    so far: as many as the texts, or one fewer while the last clip renders)."""
    if not len(texts) - 1 <= len(gifs) <= len(texts):
        raise ValueError(f"a storyboard shows each text then its clip: got {len(texts)} texts, {len(gifs)} clips")
    if not texts:
        return _STYLE + '<div class="divot-board"><p class="divot-story-empty">The story appears here.</p></div>'
    cells = []
    for k, text in enumerate(texts, start=1):
        if k <= len(gifs):
            data = base64.b64encode(gifs[k - 1]).decode("ascii")
            media = f'<img class="divot-story-clip" src="data:image/gif;base64,{data}" alt="clip {k}">'
        else:
            media = '<div class="divot-story-pending">rendering the clip …</div>'
        words = html.escape(text) if text else "<i>(no text)</i>"
        cells.append(f'<div class="divot-segment" id="story-segment-{k}">'
                     f'<p class="divot-story-text"><b>{k}.</b> {words}</p>{media}</div>')
    return _STYLE + f'<div class="divot-board">{"".join(cells)}</div>'
