"""ActivityNet-QA, open-ended: the formats of MSVD-QA (``divot.eval.tasks.msvd_qa``); videos are
``v_<video_name>.mp4`` (a file without the ``v_`` prefix is accepted too). Token-cache ids are the file stems,
so ``v_<video_name>``."""

from __future__ import annotations

from divot.eval.runner import EvalConfig, EvalItem
from divot.eval.tasks.msvd_qa import load_open_items

KIND = "open"
GROUP_KEY = None
VIDEO_PREFIXES = ("v_", "")


def load_items(cfg: EvalConfig) -> list[EvalItem]:
    return load_open_items(cfg, VIDEO_PREFIXES)
