"""Shot-cut detection of ``divot data episodes`` (PySceneDetect over PyAV, ``divot.data.episodes.scenes``):
precision and recall of the detected hard cuts against known cut frames, and the stitching calibration.

No camera footage exists on the project's machines, so part (1) builds a "real-ish" episode from what is there,
with hard cuts (and a few 1-second cross-fades) at known frames, 320x180 at 30 fps, H.264:
- two short clips shipped with gradio (``gradio/media_assets/videos``): ``world.mp4``, a rendered Earth at night
  turning (30 s), and ``a.mp4``, an animated end card (frames 0-189, before it fades to black);
- six photographs (scikit-learn's ``china.jpg`` and ``flower.jpg``; gradio's ``lion.jpg``, ``cheetah.jpg``,
  ``tower.jpg``, ``bus.png``) filmed by a slow pan and zoom (a "Ken Burns" shot): real image content and smooth
  camera motion, but no moving objects, lighting changes or motion blur;
- six ffmpeg test sources rendered by PyAV's filter graph: ``mandelbrot`` (a zooming fractal), ``life`` (Game of
  Life), ``cellauto``, ``testsrc2``, ``gradients``, ``sierpinski``.
A few cuts join two shots of the same source (two moments of the globe, two crops of one photo, two Game of Life
seeds): "same-source" cuts, the hard kind. Part (2) runs the same measurement on synthetic shapes-world episodes
(``divot data shapes-episodes``). A detection within ``--tolerance`` frames of a true cut is a hit; detections
inside a cross-fade (+-tolerance) are reported apart, neither hit nor false alarm.

Part (3): cosine of the mean shapes-tiny tokens of two adjacent pieces of one scene (the two halves of a shot of
at least 2 clips) vs two adjacent scenes (shots either side of a cut), on shapes episodes without fades: how
often each threshold would stitch the same scene (wanted) and different scenes (not wanted).

    python benchmarks/scene_cuts.py --json benchmarks/results/scene_cuts.json
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _timing import load_avg, provenance  # noqa: E402

from divot.data.episodes.scenes import DetectorSettings, detect_cuts  # noqa: E402

W, H, FPS = 320, 180, 30
LAVFI = ("mandelbrot", "life", "cellauto", "testsrc2", "gradients", "sierpinski")
PHOTOS = ("china.jpg", "flower.jpg", "lion.jpg", "cheetah.jpg", "tower.jpg", "bus.png")


def gradio_media() -> Path | None:
    spec = importlib.util.find_spec("gradio")
    return Path(spec.origin).parent / "media_assets" if spec and spec.origin else None


def lavfi_frames(name: str, n: int, rng: np.random.Generator) -> np.ndarray:
    seed = int(rng.integers(1, 2**31 - 1))
    options = {"mandelbrot": f"start_scale={rng.uniform(1, 3):.2f}", "life": f"seed={seed}:mold=10:ratio=0.2:"
               f"life_color=#{rng.integers(0x404040, 0xFFFFFF):06x}:death_color=#{rng.integers(0, 0x303030):06x}",
               "cellauto": f"seed={seed}:rule={rng.choice([18, 30, 90, 110, 150])}", "testsrc2": "",
               "gradients": f"seed={seed}:speed=0.02", "sierpinski": f"seed={seed}:jump=1"}[name]
    graph = av.filter.Graph()
    source = graph.add(name, f"size={W}x{H}:rate={FPS}" + (f":{options}" if options else ""))
    fmt, sink = graph.add("format", "pix_fmts=rgb24"), graph.add("buffersink")
    source.link_to(fmt)
    fmt.link_to(sink)
    graph.configure()
    skip = int(rng.integers(0, 90))  # start somewhere inside the source's own motion
    frames = [graph.pull().to_ndarray() for _ in range(skip + n)]
    return np.stack(frames[skip:])


def video_frames(path: Path, last: int | None = None) -> np.ndarray:
    with av.open(str(path)) as container:
        frames = [f.to_ndarray(width=W, height=H, format="rgb24") for f in container.decode(video=0)]
    return np.stack(frames[:last])


def ken_burns(image: Image.Image, n: int, rng: np.random.Generator) -> np.ndarray:
    """A pan + zoom over a photo: a 16:9 window moving and growing / shrinking linearly over ``n`` frames."""
    iw, ih = image.size
    full = min(iw, ih * W / H)  # widest 16:9 window

    def box():
        w = full * rng.uniform(0.55, 0.9)
        x, y = rng.uniform(0, iw - w), rng.uniform(0, ih - w * H / W)
        return np.array([x, y, w])

    a, b = box(), box()
    b = a + (b - a) * 0.25  # slow: a quarter of the way to another window
    frames = []
    for t in np.linspace(0, 1, n):
        x, y, w = a + (b - a) * t
        frames.append(np.asarray(image.crop((x, y, x + w, y + w * H / W)).resize((W, H), Image.Resampling.BILINEAR)))
    return np.stack(frames)


def build_episode(path: Path, num_shots: int, seed: int) -> dict:
    """Write the real-ish episode; returns its truth: cuts (with the sources either side), fades, shots."""
    rng = np.random.default_rng(seed)
    media = gradio_media()
    photos = {}
    from sklearn.datasets import load_sample_image

    for name in PHOTOS:
        if name in ("china.jpg", "flower.jpg"):
            photos[name] = Image.fromarray(load_sample_image(name))
        elif media and (media / "images" / name).is_file():
            photos[name] = Image.open(media / "images" / name).convert("RGB")
    videos = {}
    if media and (media / "videos" / "world.mp4").is_file():
        videos["world.mp4"] = video_frames(media / "videos" / "world.mp4")
        videos["a.mp4"] = video_frames(media / "videos" / "a.mp4", last=190)
    sources = [("lavfi", n) for n in LAVFI] + [("photo", n) for n in photos] + [("video", n) for n in videos]
    joins = rng.permutation(np.arange(1, num_shots))  # join k: between shot k - 1 and shot k
    same = {int(k) for k in joins[:3]}  # two shots of one source
    fades = set()  # 1-second cross-fades; never two joins in a row, so a shot loses frames to one fade at most
    for k in map(int, joins[3:]):
        if len(fades) < 3 and not {k - 1, k, k + 1} & fades:
            fades.add(k)
    truth, fade = {"cuts": [], "fades": [], "shots": []}, FPS
    previous, pending, written = None, None, 0
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(FPS))
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        stream.options = {"crf": "18", "preset": "veryfast"}

        def emit(frames):
            for frame in frames:
                for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                    container.mux(packet)
            return len(frames)

        for k in range(num_shots):
            if k in same and previous is not None and previous[1] != "a.mp4":
                kind, name = previous
            else:
                options = [src for src in sources if src != previous]
                kind, name = options[int(rng.integers(len(options)))]
            n = int(rng.integers(int(1.5 * FPS), 5 * FPS))
            if kind == "lavfi":
                frames = lavfi_frames(name, n, rng)
            elif kind == "photo":
                frames = ken_burns(photos[name], n, rng)
            else:
                clip = videos[name]
                n = min(n, len(clip))
                first = int(rng.integers(0, len(clip) - n + 1))
                frames = clip[first: first + n]
            if pending is not None and k in fades:  # the previous shot blends into this one
                written += emit(pending[:-fade])
                alpha = (np.arange(1, fade + 1) / (fade + 1))[:, None, None, None]
                blend = ((1 - alpha) * pending[-fade:] + alpha * frames[:fade] + 0.5).astype(np.uint8)
                truth["fades"].append([written, written + fade])
                written += emit(blend)
                frames = frames[fade:]
            elif pending is not None:
                written += emit(pending)
                truth["cuts"].append({"frame": written, "before": f"{previous[0]}:{previous[1]}",
                                      "after": f"{kind}:{name}", "same_source": (kind, name) == previous})
            truth["shots"].append({"source": f"{kind}:{name}", "frames": n})
            pending, previous = frames, (kind, name)
        written += emit(pending)
        for packet in stream.encode():
            container.mux(packet)
    truth["num_frames"] = written
    return truth


def score(detected: list[int], cuts: list[dict], fades: list[list[int]], tol: int) -> dict:
    in_fade = [c for c in detected if any(a - tol <= c <= b + tol for a, b in fades)]
    rest = sorted(c for c in detected if c not in in_fade)
    hits, missed = set(), []
    for cut in cuts:
        near = [c for c in rest if abs(c - cut["frame"]) <= tol and c not in hits]
        if near:
            hits.add(min(near, key=lambda c: abs(c - cut["frame"])))
        else:
            missed.append(cut)
    tp, fp = len(hits), len(rest) - len(hits)
    same = [c for c in cuts if c.get("same_source")]
    return {"num_cuts": len(cuts), "num_detected": len(detected), "true_positives": tp, "false_positives": fp,
            "precision": tp / (tp + fp) if tp + fp else None, "recall": tp / len(cuts) if cuts else None,
            "same_source_recall": (sum(c not in missed for c in same) / len(same)) if same else None,
            "missed": missed, "false_alarms": sorted(set(rest) - hits), "detections_in_fades": len(in_fade),
            "fades_with_a_detection": sum(any(a - tol <= c <= b + tol for c in detected) for a, b in fades),
            "num_fades": len(fades)}


def measure(path: Path, cuts: list[dict], fades: list[list[int]], tol: int, num_frames: int) -> dict:
    out = {}
    for detector in ("content", "adaptive"):
        start = time.perf_counter()
        detected = detect_cuts(path, DetectorSettings(detector))
        seconds = time.perf_counter() - start
        out[detector] = {**score(detected, cuts, fades, tol), "seconds": round(seconds, 3),
                         "frames_per_second": round(num_frames / seconds, 1),
                         "settings": DetectorSettings(detector).to_json()}
    return out


def shapes_part(folder: Path, num: int, seed: int, tol: int) -> dict:
    from divot.data.shapes.episodes import generate_episodes

    truth = generate_episodes(folder, num, seed)
    per = {name: measure(folder / name, [{"frame": c} for c in t["cuts"]], t["fades"], tol, t["num_frames"])
           for name, t in truth.items()}
    total = {}
    for detector in ("content", "adaptive"):
        rows = [p[detector] for p in per.values()]
        tp, fp, n = (sum(r[k] for r in rows) for k in ("true_positives", "false_positives", "num_cuts"))
        total[detector] = {"num_cuts": n, "true_positives": tp, "false_positives": fp,
                           "precision": tp / (tp + fp) if tp + fp else None, "recall": tp / n if n else None,
                           "num_fades": sum(r["num_fades"] for r in rows),
                           "fades_with_a_detection": sum(r["fades_with_a_detection"] for r in rows),
                           "frames_per_second": round(sum(t["num_frames"] for t in truth.values())
                                                      / sum(r["seconds"] for r in rows), 1)}
    return {"episodes": num, "seed": seed, "size": 64, "fps": 16.0, "total": total}


def stitch_part(folder: Path, num: int, seed: int) -> dict:
    import torch

    from divot.data.episodes.clips import (
        clip_windows,
        shot_similarities,
        shots_from_cuts,
        window_clip_indices,
    )
    from divot.data.loading import load_indexed_clips
    from divot.data.sampling import sparse_indices
    from divot.data.shapes.episodes import generate_episodes
    from divot.tokenizer import VideoTokenizer

    tokenizer = VideoTokenizer.from_pretrained(Path(__file__).resolve().parents[1] / "divot/assets/shapes-tiny/tokenizer")
    truth = generate_episodes(folder, num, seed, fade_prob=0.0, short_prob=0.0)
    same, cross = [], []
    for name, t in truth.items():
        windows = [clip_windows(a, b, t["fps"]) for a, b in shots_from_cuts(t["cuts"], t["num_frames"])]
        flat = [w for shot in windows for w in shot]
        dense = np.stack([window_clip_indices(a, b, t["fps"]) for a, b in flat])
        with torch.no_grad():
            tokens = tokenizer.eval().encode(load_indexed_clips(folder / name, sparse_indices(dense), 32)).numpy()
        bounds = np.cumsum([0, *(len(s) for s in windows)])
        shots = [tokens[bounds[i]: bounds[i + 1]] for i in range(len(windows))]
        cross += shot_similarities(shots)
        same += [shot_similarities([s[: len(s) // 2], s[len(s) // 2:]])[0] for s in shots if len(s) >= 2]
    thresholds = (0.9, 0.95, 0.96, 0.97, 0.98, 0.99)
    def percentiles(values):
        q = (0, 10, 50, 90, 100)
        return {"n": len(values), "percentiles": dict(zip(map(str, q), np.percentile(values, q).round(4).tolist(),
                                                          strict=True))}

    return {"tokenizer": "divot/assets/shapes-tiny/tokenizer", "episodes": num, "seed": seed,
            "same_scene": percentiles(same), "different_scenes": percentiles(cross),
            "stitched_at": {str(th): {"same_scene": float(np.mean(np.array(same) >= th)),
                                      "different_scenes": float(np.mean(np.array(cross) >= th))} for th in thresholds}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shots", type=int, default=80, help="shots in the real-ish episode (default 80)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tolerance", type=int, default=1, help="frames a detection may be off (default 1)")
    parser.add_argument("--shapes-episodes", type=int, default=10)
    parser.add_argument("--no-stitch", action="store_true", help="skip part (3), the only part needing torch")
    parser.add_argument("--keep", type=Path, default=None, help="keep the built episode video here")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    result = provenance(argv, "benchmarks/scene_cuts.py")
    with tempfile.TemporaryDirectory() as tmp:
        video = args.keep or Path(tmp) / "realish.mp4"
        truth = build_episode(video, args.shots, args.seed)
        result["realish"] = {"video": {"size": [W, H], "fps": FPS, "num_frames": truth["num_frames"],
                                       "shots": truth["shots"], "fades": truth["fades"]},
                             "tolerance": args.tolerance,
                             **measure(video, truth["cuts"], truth["fades"], args.tolerance, truth["num_frames"])}
        result["shapes"] = shapes_part(Path(tmp) / "shapes", args.shapes_episodes, args.seed, args.tolerance)
        if not args.no_stitch:
            result["stitch"] = stitch_part(Path(tmp) / "stitch", args.shapes_episodes, args.seed + 1)
    result["load_avg_after"] = load_avg()
    for part in ("realish", "shapes"):
        for detector in ("content", "adaptive"):
            r = result[part][detector] if part == "realish" else result[part]["total"][detector]
            print(f"{part:8s} {detector:8s} cuts {r['num_cuts']:3d}  precision {r['precision']:.3f}  "
                  f"recall {r['recall']:.3f}  fades with a detection {r['fades_with_a_detection']}/{r['num_fades']}")
    if "stitch" in result:
        print("stitching (share stitched: same scene / different scenes):",
              {k: (round(v["same_scene"], 2), round(v["different_scenes"], 2)) for k, v in result["stitch"]["stitched_at"].items()})
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
