"""Story datasets from long videos ("episodes"): the flow of docs/stories_from_episodes.md.

1. ``scenes``: shot boundaries with PySceneDetect (the ``episodes`` extra: ``pip install 'divot[episodes]'``),
   decoded through its PyAV backend.
2. ``clips``: shots -> 2-second clips by the one clip sampler (short shots merged into a neighbour), adjacent
   shots stitched into scenes by the cosine of their mean tokens; ``splitter`` runs it over a folder of
   episodes, resumably, into a ``metadata.jsonl`` of clips.
3. ``captions``: a caption per clip, from a Divot model or an OpenAI-compatible vision endpoint.
4. ``storylines``: K consecutive captions -> one story (instruction + a sentence per clip), from a template
   or an OpenAI-compatible text endpoint, validated by the story reader (DESIGN section 10).

This package's ``__init__`` imports nothing heavy: neither torch nor scenedetect.
"""

from __future__ import annotations

import importlib.util

EPISODES_EXTRA_HINT = "pip install 'divot[episodes]'"


def is_scenedetect_available() -> bool:
    """Whether PySceneDetect (and the OpenCV it needs) can be imported: the ``episodes`` extra is installed."""
    return all(importlib.util.find_spec(name) is not None for name in ("scenedetect", "cv2"))


def require_scenedetect() -> None:
    """Raise one ``ImportError`` naming the extra when PySceneDetect or OpenCV is missing."""
    if not is_scenedetect_available():
        raise ImportError(f"shot detection needs PySceneDetect and OpenCV, which are not installed: "
                          f"{EPISODES_EXTRA_HINT}")
