"""Shot boundaries of a video with PySceneDetect, decoded through its PyAV backend (PyAV is a core dependency;
PySceneDetect's detectors still need OpenCV for the HSV conversion, hence the ``episodes`` extra).

``ContentDetector`` (default) scores each frame by the mean change of its HSV channels from the previous frame
and cuts where the score passes ``threshold`` (PySceneDetect's default 27); ``AdaptiveDetector`` compares the
score with its rolling average instead (default ratio 3), which helps with fast camera motion. Neither finds
slow cross-fades reliably: a fade usually becomes no cut or one cut somewhere inside it. Frame numbers are
native frames counted from 0 (what ``divot.data.video`` decodes); a cut at frame c starts a new shot at c.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

from divot.data.episodes import require_scenedetect

DETECTORS = ("content", "adaptive")
DEFAULT_THRESHOLDS = {"content": 27.0, "adaptive": 3.0}  # PySceneDetect's own defaults


@dataclass(frozen=True)
class DetectorSettings:
    """How shots are found. ``threshold`` None: the detector's default; ``min_shot_seconds``: no cut closer than
    this to the previous one (PySceneDetect's ``min_scene_len``, converted to frames of each video)."""

    detector: str = "content"
    threshold: float | None = None
    min_shot_seconds: float = 0.5

    def __post_init__(self) -> None:
        if self.detector not in DETECTORS:
            raise ValueError(f"detector must be one of {DETECTORS}, got {self.detector!r}")
        if self.threshold is not None and not (math.isfinite(self.threshold) and self.threshold > 0):
            raise ValueError(f"threshold must be a number > 0, got {self.threshold!r}")
        if not (math.isfinite(self.min_shot_seconds) and self.min_shot_seconds >= 0):
            raise ValueError(f"min_shot_seconds must be >= 0, got {self.min_shot_seconds!r}")

    @property
    def resolved_threshold(self) -> float:
        return DEFAULT_THRESHOLDS[self.detector] if self.threshold is None else float(self.threshold)

    def to_json(self) -> dict:
        return {**asdict(self), "threshold": self.resolved_threshold}


def _frame_number(timecode) -> int:
    """A FrameTimecode's frame number (``frame_num`` since PySceneDetect 0.7, ``get_frames()`` before)."""
    number = getattr(timecode, "frame_num", None)
    return int(timecode.get_frames() if number is None else number)


def detect_cuts(path: str | Path, settings: DetectorSettings | None = None) -> list[int]:
    """The first frames of every shot but the first, ascending: native frame numbers of ``path``.

    Raises ImportError naming the ``episodes`` extra when PySceneDetect is missing, FileNotFoundError for a
    missing file, and PySceneDetect's / PyAV's errors for a file it cannot decode."""
    require_scenedetect()
    from scenedetect import AdaptiveDetector, ContentDetector, SceneManager
    from scenedetect.backends.pyav import VideoStreamAv

    settings = settings or DetectorSettings()
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"video not found: {path}")
    # suppress_output keeps PyAV's global log callback as it is (PySceneDetect would reset it otherwise)
    video = VideoStreamAv(str(path), suppress_output=True)
    min_frames = max(1, round(settings.min_shot_seconds * float(video.frame_rate)))  # int: PySceneDetect 0.6 too
    if settings.detector == "content":
        detector = ContentDetector(threshold=settings.resolved_threshold, min_scene_len=min_frames)
    else:
        detector = AdaptiveDetector(adaptive_threshold=settings.resolved_threshold, min_scene_len=min_frames)
    manager = SceneManager()
    manager.add_detector(detector)
    manager.detect_scenes(video=video, show_progress=False)
    return sorted(_frame_number(start) for start, _ in manager.get_scene_list()[1:])
