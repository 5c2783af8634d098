"""``divot demo``: the shapes-world demo (the README's main job).

Until the bundled trained model exists (issue #5) the demo exercises the pipeline that is built: it
generates shapes-world clips as real mp4 files, tokenizes every clip with a tokenizer (the tiny preset with
random weights by default, or ``--tokenizer DIR``), fits linear probes of the tokens for colour, shape and
motion on training clips, scores them on held-out attribute combinations, and writes an HTML report.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("outputs/demo"), help="output folder")
    parser.add_argument("--tokenizer", default="tiny",
                        help="tokenizer directory, or a preset name for random weights (default: tiny)")
    parser.add_argument("--num-train", type=int, default=240, help="training clips for the probes")
    parser.add_argument("--num-test", type=int, default=80, help="held-out clips")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--show", type=int, default=8, help="clips shown as GIFs in the report")


def run(args) -> int:
    import torch

    from divot.commands.tokenize import load_tokenizer
    from divot.data.loading import load_video_clips
    from divot.data.shapes import generate_dataset
    from divot.data.transforms import to_sparse
    from divot.data.writers import write_video
    from divot.eval.probe import linear_probe

    if args.num_train < 20 or args.num_test < 5:
        raise ValueError("--num-train must be >= 20 and --num-test >= 5")
    t0 = time.time()
    out = args.out
    torch.manual_seed(args.seed)
    tokenizer = load_tokenizer(args.tokenizer).eval()
    size = tokenizer.config.frame_size
    splits = {
        "train": generate_dataset(out / "data" / "train", args.num_train, args.seed, size=size),
        "held_out": generate_dataset(out / "data" / "held_out", args.num_test, args.seed + 1, held_out=True,
                                     size=size),
    }
    tokens, labels, records = {}, {}, {}
    for split, summary in splits.items():
        recs = [json.loads(line) for line in Path(summary["metadata"]).read_text().splitlines()]
        root = Path(summary["out_dir"])
        dense = torch.cat([load_video_clips(root / r["video"], size=size, max_clips=1) for r in recs])
        tokens[split] = tokenizer.encode(to_sparse(dense), batch_size=32, progress=True)
        labels[split] = {a: [r["attributes"][0][a] for r in recs] for a in ("colour", "shape", "motion")}
        records[split] = (recs, dense)
    probes = {a: linear_probe(tokens["train"], labels["train"][a], tokens["held_out"], labels["held_out"][a])
              for a in ("colour", "shape", "motion")}
    gifs = []
    recs, dense = records["held_out"]
    for r, clip in zip(recs[: args.show], dense[: args.show], strict=True):
        gif = write_video(clip, out / "gifs" / f"{r['id']}.gif", fps=8)
        gifs.append((gif.relative_to(out).as_posix(), r["caption"]))
    summary = {
        "tokenizer": args.tokenizer, "token_shape": list(tokens["train"].shape[1:]),
        "num_train": args.num_train, "num_held_out": args.num_test, "probes": probes,
        "token_std_between_clips": float(tokens["train"].std(dim=0).mean()),
        "seconds": round(time.time() - t0, 1),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    _write_report(out / "report.html", summary, gifs)
    for attr, p in probes.items():
        logger.info("probe %-6s accuracy %.3f (chance %.3f)", attr, p["accuracy"], p["chance"])
    logger.info("report: %s", out / "report.html")
    return 0


def _write_report(path: Path, summary: dict, gifs: list[tuple[str, str]]) -> None:
    import html

    rows = "".join(
        f"<tr><td>{a}</td><td>{p['accuracy']:.1%}</td><td>{p['chance']:.1%}</td><td>{p['num_classes']}</td></tr>"
        for a, p in summary["probes"].items()
    )
    cells = "".join(f"<figure><img src='{src}' width=128><figcaption>{html.escape(cap)}</figcaption></figure>"
                    for src, cap in gifs)
    path.write_text(f"""<!doctype html><html><head><meta charset="utf-8"><title>Divot demo</title>
<style>body{{font-family:sans-serif;margin:2em}} figure{{display:inline-block;margin:.5em}}
table{{border-collapse:collapse}} td,th{{border:1px solid #ccc;padding:.3em .8em}}</style></head><body>
<h1>Divot shapes-world demo</h1>
<p>Tokenizer: <code>{html.escape(str(summary['tokenizer']))}</code>, tokens per clip {summary['token_shape']}.
Linear probes of the tokens, trained on {summary['num_train']} clips and scored on {summary['num_held_out']}
clips whose colour-shape combinations never occur in training.</p>
<table><tr><th>attribute</th><th>probe accuracy</th><th>majority baseline</th><th>classes</th></tr>{rows}</table>
<h2>Held-out clips</h2>{cells}
<p>Finished in {summary['seconds']} s.</p></body></html>
""")
