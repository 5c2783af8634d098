"""The demo's HTML report: accuracy tables, the captions and answers with their clips, the generated videos."""

from __future__ import annotations

import html
import os
from pathlib import Path

from divot.hub import atomic_write_text

STYLE = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:.25em .7em;text-align:left}
figure{display:inline-block;margin:.4em;width:150px;vertical-align:top;font-size:.8em}
img,video{width:128px;height:128px;image-rendering:pixelated;background:#000}
.ok{color:#070}.bad{color:#b00}"""


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def _with_ci(x, ci) -> str:
    """An accuracy with its 95% interval below it, when there is one."""
    if not ci or ci[0] is None:
        return _pct(x)
    return f"{_pct(x)}<br><small>{100 * ci[0]:.0f}-{100 * ci[1]:.0f}%</small>"


def _mark(ok: bool) -> str:
    return "<span class=ok>&#10003;</span>" if ok else "<span class=bad>&#10007;</span>"


# What each part of the bundled model saw of the held-out colour-shape pairs (train/shapes_model.py).
HELD_OUT_PAIRS = ("fresh clips of the colour-shape pairs kept out of the training data. No caption, question or "
                  "story about them was ever trained on, by the LLM or the story LLM. The tokenizer and de-tokenizer "
                  "did see them as pixels: their channel-shuffle phase (t1_shapes_tiny_colours.yaml) shows training "
                  "clips in a random RGB order, which turns one palette colour into another, so every shape "
                  "appears in every colour, held-out pairs included.")


def _rel(path: Path, root: Path) -> str:
    return html.escape(Path(os.path.relpath(path, root)).as_posix())


def write_report(path: Path, summary: dict, root: Path) -> Path:
    """Write ``summary`` (what ``divot demo`` computed) as one HTML page; media paths relative to ``root``."""
    e = html.escape
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>Divot demo</title><style>{STYLE}</style>"
             f"</head><body><h1>Divot shapes-world demo</h1><p>Model <code>{e(str(summary['model']))}</code> on "
             f"{e(summary['device'])}, seed {summary['seed']}, {summary['seconds']} s. <b>new</b>: fresh clips of the "
             f"colour-shape pairs of the training data; <b>held_out</b>: {e(HELD_OUT_PAIRS)}</p>"]
    rows = []
    for split, res in summary["splits"].items():
        caps, mc = res["captions"], res["multiple_choice"]
        ch = caps["chance"]
        kinds = [("", caps["accuracy"], caps.get("ci95", {}), _with_ci(mc["accuracy"], mc.get("ci95")))]
        if caps.get("method", "greedy") != "greedy":
            kinds.append((", greedy captions", caps["accuracy_greedy"], {}, ""))
        for label, acc, ci, mc_cell in kinds:
            cells = "".join(f"<td>{_with_ci(acc[k], ci.get(k))}</td>" for k in ("colour", "shape", "motion", "all"))
            rows.append(f"<tr><td>{e(split + label)}</td>{cells}<td>{mc_cell}</td><td>{len(caps['rows'])}</td></tr>")
    method = next(iter(summary["splits"].values()))["captions"].get("method", "greedy")
    parts.append(f"<h2>Understanding</h2><p>Captions: {e(method)}. Below each accuracy: its 95% bootstrap "
                 "interval over the clips.</p><table><tr><th>clips</th><th>caption colour</th><th>caption shape</th>"
                 "<th>caption motion</th><th>all three</th><th>5-way multiple choice</th><th>n</th></tr>"
                 + "".join(rows)
                 + f"<tr><td>chance</td><td>{_pct(ch['colour'])}</td><td>{_pct(ch['shape'])}</td>"
                   f"<td>{_pct(ch['motion'])}</td><td></td><td>20.0%</td><td></td></tr></table>")
    if "generation" in summary:
        g = summary["generation"]
        acc, ch = g["accuracy"], g["chance"]
        parts.append("<h2>Generation</h2><p>Each prompt's clip is measured by the shapes world's pixel measurements "
                     f"(dominant colour, shape template, centroid motion); GMM mode {e(str(g.get('mode')))}.</p>"
                     "<table><tr><th></th><th>colour</th>"
                     "<th>shape</th><th>motion</th></tr>"
                     f"<tr><td>generated clips match the prompt</td><td>{_pct(acc['colour'])}</td>"
                     f"<td>{_pct(acc['shape'])}</td><td>{_pct(acc['motion'])}</td></tr><tr><td>chance</td>"
                     f"<td>{_pct(ch['colour'])}</td><td>{_pct(ch['shape'])}</td><td>{_pct(ch['motion'])}</td></tr>"
                     "</table>")
        kinds = g.get("motion_by_kind") or {}
        if kinds:
            parts.append("<p>Motion by what the prompt asked: "
                         + "; ".join(f"{e(k)} {_pct(v['accuracy']) if v['accuracy'] is not None else '-'} "
                                     f"(n = {v['n']})" for k, v in kinds.items()) + ".</p>")
        for row in g["rows"]:
            m = row["measured"]
            marks = " ".join(f"{k[0]}{_mark(v)}" for k, v in row["correct"].items())
            parts.append(f"<figure><img src='{_rel(root / 'generated' / row['gif'], path.parent)}'>"
                         f"<figcaption>{e(row['prompt'])}<br>seen: {e(str(m['colour']))} {e(str(m['shape']))} "
                         f"{e(str(m['motion']))}<br>{marks}</figcaption></figure>")
    if "stories" in summary:
        parts.append(_stories(summary["stories"], root, path))
    for split, res in summary["splits"].items():
        parts.append(f"<h2>Captions and answers: {e(split)} clips</h2>")
        answers = {r.get("id"): r for r in res["multiple_choice"]["rows"]}
        for row in res["captions"]["rows"]:
            video = root / "clips" / split / row["video"]
            marks = " ".join(f"{k[0]}{_mark(v)}" for k, v in row["correct"].items())
            mc = answers.get(row["id"])
            greedy = f"<br>greedy: {e(row['greedy'])}" if "greedy" in row else ""
            qa = ""
            if mc is not None:
                qa = (f"<br>Q: {e(str(mc['question']))}<br>A: {e(str(mc['prediction_text']))}"
                      f" {_mark(mc['correct'])}")
            parts.append(f"<figure><video src='{_rel(video, path.parent)}' autoplay loop muted playsinline></video>"
                         f"<figcaption>truth: {e(row['truth'])}<br>said: {e(row['caption'])}{greedy}<br>{marks}{qa}"
                         "</figcaption></figure>")
    parts.append("</body></html>")
    atomic_write_text(path, "\n".join(parts) + "\n")
    return path


def _stories(stories: dict, root: Path, path: Path) -> str:
    """The stories section: the rates, then each story's sentences under their clips."""
    e = html.escape
    groups = [("all", stories["summary"])] + [(f"{k} pairs", v) for k, v in stories.get("by_pairs", {}).items()]
    parts = ["<h2>Stories</h2><p>Structured: the first sentence names an object and every later sentence refers to "
             "that one object (the trained story structure). Subject as instructed: that object is the instruction's. "
             "Clip colour / motion: each clip, followed by the subject's colour, shows that colour / the motion its "
             "own sentence names.</p><table><tr><th>stories</th><th>n</th><th>structured</th>"
             "<th>subject as instructed</th><th>clip colour</th><th>clip motion</th><th>motion chance</th></tr>"
             + "".join(f"<tr><td>{e(name)}</td><td>{st['num_stories']}</td><td>{_pct(st['structured'])}</td>"
                       f"<td>{_pct(st['follows_instruction'])}</td><td>{_pct(st['clip_colour'])}</td>"
                       f"<td>{_pct(st['clip_motion'])}</td><td>{_pct(st['motion_chance'])}</td></tr>"
                       for name, st in groups)
             + "</table>"]
    for row in stories["rows"]:
        cells = []
        for text, gif, clip in zip(row["texts"], row["gifs"], row["clips"], strict=True):
            marks = f"c{_mark(clip['colour_ok'])}" + (f" m{_mark(clip['motion_ok'])}" if clip["motion"] else "")
            cells.append(f"<figure><img src='{_rel(root / 'stories' / gif, path.parent)}'><figcaption>{e(text)}"
                         f"<br>seen: {e(str(clip['measured_colour']))} {e(str(clip['measured_motion']))}<br>{marks}"
                         "</figcaption></figure>")
        parts.append(f"<div><p><b>{e(row['instruction'])}</b> structured {_mark(row['structured'])}, subject "
                     f"{_mark(row['follows_instruction'])}</p>{''.join(cells)}</div>")
    return "\n".join(parts)
