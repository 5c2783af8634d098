"""Peak memory of turning a video into tokenizer input (``load_sparse_clips``): before and after decoding at the
model's size, for long, 1080p and 4K videos, with every installed decoder backend.

Videos are generated once with PyAV (H.264, libx264 ``veryfast``, yuv420p, a drifting texture with a moving
box: cheap to draw, not trivial to compress) and kept under ``--work``:

- ``1080p_90s``: 1920 x 1080, 25 fps, 90 s (the measurement from the issue);
- ``4k_12s``: 3840 x 2160, 25 fps, 12 s (resolution growth);
- ``1080p_360s``: 1920 x 1080, 5 fps, 6 minutes (length growth: 20 clips spread over 6 minutes).

Each measurement runs in a fresh child process that imports everything first, records its resident memory
(``VmRSS``), resets the peak (``/proc/self/clear_refs``), loads, and reports the peak (``VmHWM``) above that
baseline and the seconds taken:

- ``before``: the previous path: probe (open, decode frame 0), then open again, decode every sparse frame at
  full size (decord ``get_batch``), then the transform's resize;
- ``after (<backend>)``: ``load_sparse_clips`` with ``DIVOT_VIDEO_BACKEND=<backend>``: opened once, frames
  resized as they are decoded;
- ``after, native decode (pyav)``: ``load_sparse_clips(decode_at_model_size=False)``: frames decoded at full
  size a few at a time and resized by the transform (bit-identical to ``before``).

Each measurement is repeated ``--repeats`` times (fresh processes): decord's peak varies by tens of MB from
run to run (its reader's native threads), so the table gives the median and the range.

Target (issue 26): <= 400 MB above the baseline for the 90-s 1080p video, and no growth with length or
resolution.

    python benchmarks/decode_memory.py
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _textured_video import write_textured_video
from _timing import ROOT, provenance

VIDEOS = {  # name -> (height, width, fps, seconds)
    "1080p_90s": (1080, 1920, 25, 90),
    "4k_12s": (2160, 3840, 25, 12),
    "1080p_360s": (1080, 1920, 5, 360),
}
TARGET_MB = 400

CHILD = r"""
import json, os, sys, time
import av  # noqa: F401  (before decord)
import numpy as np
import torch
from divot.data import loading
from divot.data.sampling import sample_clip_indices, sparse_indices
from divot.data.transforms import frames_to_tensor
mode, path = sys.argv[1:3]
if mode == "before":
    import decord
elif mode != "native":
    import importlib
    importlib.import_module({"pyav": "av", "decord": "decord", "torchcodec": "torchcodec.decoders"}[mode])

def status(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) * 1024
base = status("VmRSS:")
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # reset VmHWM to the current RSS: import-time peaks do not count
start = time.perf_counter()
if mode == "before":
    reader = decord.VideoReader(path)  # probe: open, count, decode frame 0
    num_frames, fps = len(reader), reader.get_avg_fps()
    reader.get_batch([0]).asnumpy()
    del reader
    indices = sparse_indices(np.stack(sample_clip_indices(num_frames, fps)))
    unique, inverse = np.unique(indices, return_inverse=True)
    frames = decord.VideoReader(path).get_batch(unique.tolist()).asnumpy()  # (u, H, W, 3) at full size
    clips = frames_to_tensor(frames, 256)[torch.from_numpy(inverse.reshape(indices.shape))]
elif mode == "native":
    os.environ["DIVOT_VIDEO_BACKEND"] = "pyav"
    clips = loading.load_sparse_clips(path, decode_at_model_size=False)
else:
    os.environ["DIVOT_VIDEO_BACKEND"] = mode
    clips = loading.load_sparse_clips(path)
seconds = time.perf_counter() - start
torch.save(clips, sys.argv[3])
print(json.dumps({"baseline_bytes": base, "peak_bytes": status("VmHWM:"), "seconds": seconds,
                  "shape": list(clips.shape)}))
"""


def make_video(path: Path, height: int, width: int, fps: int, seconds: int) -> Path:
    """An H.264 test video: a texture drifting diagonally and a bright box crossing it (written once)."""
    if path.is_file():
        return path
    import numpy as np

    box = height // 5

    def paint(frame, t: int) -> None:
        x = int((width - box) * (0.5 + 0.5 * np.sin(t / (2 * fps))))
        frame[height // 3 : height // 3 + box, x : x + box] = (240, 60, 30)

    return write_textured_video(path, height, width, fps, seconds, paint)


def measure(mode: str, video: Path, out: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("DIVOT_VIDEO_BACKEND", None)
    result = subprocess.run([sys.executable, "-c", CHILD, mode, str(video), str(out)], cwd=ROOT, env=env,
                            capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{mode} on {video.name} failed:\n{result.stderr[-2000:]}")
    record = json.loads(result.stdout.strip().splitlines()[-1])
    record["peak_above_baseline_mb"] = (record["peak_bytes"] - record["baseline_bytes"]) / 2**20
    return record


def run(args) -> dict:
    import torch

    sys.path.insert(0, str(ROOT))
    from divot.data.decoders import available_backends

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    backends = [b for b in available_backends() if b in args.backends]
    modes = (["before"] if "decord" in available_backends() else []) + backends + ["native"]
    record = {"provenance": provenance(sys.argv[1:], "benchmarks/decode_memory.py"), "target_mb": TARGET_MB,
              "videos": {}}
    for name in args.videos:
        height, width, fps, seconds = VIDEOS[name]
        began = time.perf_counter()
        video = make_video(work / f"{name}.mp4", height, width, fps, seconds)
        rows, clips = {}, {}
        for mode in modes:
            runs = [measure(mode, video, work / f"{name}_{mode}.pt") for _ in range(args.repeats)]
            peaks = sorted(run["peak_above_baseline_mb"] for run in runs)
            row = {"peak_above_baseline_mb": statistics.median(peaks), "peaks_mb": peaks,
                   "seconds": statistics.median(run["seconds"] for run in runs),
                   "runs": runs}
            clips[mode] = torch.load(work / f"{name}_{mode}.pt")
            label = {"before": "before", "native": "after, native decode (pyav)"}.get(mode, f"after ({mode})")
            rows[label] = row
            if "before" in clips or "native" in clips:
                reference = clips.get("before", clips.get("native"))
                diff = (clips[mode] - reference).abs()
                row["vs_before_max_abs"], row["vs_before_mean_abs"] = float(diff.max()), float(diff.mean())
        record["videos"][name] = {"height": height, "width": width, "fps": fps, "seconds": seconds,
                                  "file_mb": video.stat().st_size / 2**20,
                                  "generation_seconds": time.perf_counter() - began, "modes": rows}
    return record


def markdown(record: dict) -> str:
    lines = ["| video | load | peak above baseline, median (min-max) | time (median) | vs before (max / mean abs, [-1, 1]) |",
             "|---|---|---|---|---|"]
    for name, info in record["videos"].items():
        for label, row in info["modes"].items():
            diff = f"{row['vs_before_max_abs']:.4f} / {row['vs_before_mean_abs']:.5f}" if "vs_before_max_abs" in row else ""
            spread = f" ({row['peaks_mb'][0]:.0f}-{row['peaks_mb'][-1]:.0f})" if len(row.get("peaks_mb", [])) > 1 else ""
            lines.append(f"| {name} ({info['file_mb']:.0f} MB) | {label} | {row['peak_above_baseline_mb']:.0f} MB{spread} | "
                         f"{row['seconds']:.1f} s | {diff} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", nargs="+", choices=list(VIDEOS), default=list(VIDEOS))
    parser.add_argument("--backends", nargs="+", default=["decord", "torchcodec", "pyav"])
    parser.add_argument("--repeats", type=int, default=3, help="fresh processes per measurement")
    parser.add_argument("--work", default="/tmp/divot_decode_memory", help="where the generated videos are kept")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "decode_memory.json"))
    args = parser.parse_args(argv)
    record = run(args)
    Path(args.out).write_text(json.dumps(record, indent=2) + "\n")
    print(markdown(record))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
