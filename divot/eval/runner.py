"""What every benchmark task shares: the run settings, the items, the video tokens, the prediction log.

- ``EvalConfig``: the settings of one run (validated on construction); entry points fill it from the command
  line, the library never picks a device.
- ``EvalItem``: one question (id, video id, resolved video path or None, question, options, answer).
- ``VideoTokens``: clip tokens (clips, q, d) for an item, read from a ``TokenCache`` by video id or computed by
  decoding and tokenizing the video; a missing or unreadable video raises ``MissingVideo`` with the reason.
  ``VideoTokens.iterate`` decodes ahead in DataLoader workers (``divot.data.prefetch``) while the main
  process tokenizes and answers; results come in item order and a bad video is the same ``MissingVideo``.
- ``PredictionLog``: ``predictions.jsonl``, one JSON line per item appended (and flushed) as it is done. A rerun
  reads it back and skips finished ids; a truncated last line (a kill mid-write) is cut off. Items whose video
  was missing are logged too (status ``missing_video``) and retried by a rerun.
- Several ranks (``torchrun``, ``divot.distributed``): rank r answers every world-th unfinished item and
  appends to its own ``predictions.rank<r>.jsonl`` (checking "finished" against ``predictions.jsonl``);
  ``merge_parts`` (rank 0, after a barrier, and at the start of every run for the parts a killed run left)
  appends the parts' records to ``predictions.jsonl`` in item order and removes them. A fresh run's
  ``predictions.jsonl`` is therefore the same, line for line, whatever the number of ranks.
- ``run_items``: the loop (tqdm), ``write_summary``: ``summary.json`` (written atomically).

``run.json`` in the output folder records the settings that decide the predictions (model, mode, prompt,
decoding); resuming into a folder made with other settings is a ``ValueError`` instead of a mixed result.
"""

from __future__ import annotations

import json
import logging
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from divot.hub import atomic_write_text

logger = logging.getLogger(__name__)

PREDICTIONS_NAME = "predictions.jsonl"
PART_GLOB = "predictions.rank*.jsonl"
SUMMARY_NAME = "summary.json"
RUN_NAME = "run.json"
MODES = ("ll", "gen")
ANSWERED, MISSING = "answered", "missing_video"


@dataclass
class EvalConfig:
    """Settings of one evaluation run. ``model`` is how the model was named (directory or bundled name);
    ``prompt_template`` None means the task's default; ``greedy`` False samples with ``temperature`` / ``top_p``
    (the model's defaults when None), seeded per item from ``seed`` and the item id."""

    task: str
    questions: Path
    out: Path
    model: str = "shapes-tiny"
    answers: Path | None = None
    videos: Path | None = None
    mode: str = "ll"
    limit: int | None = None
    tokens_cache: Path | None = None
    seed: int = 0
    prompt_template: str | None = None
    greedy: bool = True
    temperature: float | None = None
    top_p: float | None = None
    max_new_tokens: int | None = None
    max_clips: int | None = None
    ll_normalize: str = "mean"
    judge: str | None = None
    judge_model: str | None = None
    judge_api_key_env: str = "OPENAI_API_KEY"
    accuracy_metric: str | None = None
    bootstrap_resamples: int = 1000
    progress: bool = True
    num_workers: int = 0
    batch_size: int = 1
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        for name in ("questions", "answers", "videos", "out", "tokens_cache"):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, Path(value))
        if not self.questions.is_file():
            raise FileNotFoundError(f"questions file {self.questions} does not exist")
        if self.answers is not None and not self.answers.is_file():
            raise FileNotFoundError(f"answers file {self.answers} does not exist")
        if self.videos is None and self.tokens_cache is None:
            raise ValueError("give the videos (--videos DIR) or a token cache (--tokens-cache DIR)")
        if self.videos is not None and not self.videos.is_dir():
            raise FileNotFoundError(f"video folder {self.videos} does not exist")
        if self.tokens_cache is not None and not self.tokens_cache.is_dir():
            raise FileNotFoundError(f"token cache {self.tokens_cache} does not exist")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit must be >= 1, got {self.limit}")
        if self.max_clips is not None and self.max_clips < 1:
            raise ValueError(f"max_clips must be >= 1, got {self.max_clips}")
        if self.max_new_tokens is not None and self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.temperature is not None and self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.ll_normalize not in ("mean", "sum"):
            raise ValueError(f"ll_normalize must be 'mean' or 'sum', got {self.ll_normalize!r}")
        if self.bootstrap_resamples < 1:
            raise ValueError(f"bootstrap_resamples must be >= 1, got {self.bootstrap_resamples}")
        if self.num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {self.num_workers}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")

    def decoding(self) -> dict:
        """Keyword arguments for ``Divot.generate_text`` (greedy or sampling)."""
        out: dict = {"greedy": self.greedy}
        if self.max_new_tokens is not None:
            out["max_new_tokens"] = self.max_new_tokens
        if not self.greedy:
            for key in ("temperature", "top_p"):
                if getattr(self, key) is not None:
                    out[key] = getattr(self, key)
        return out

    def item_seed(self, item_id: str) -> int:
        """A per-item sampling seed: the same for an item whatever --limit or resuming does."""
        return (self.seed * 1_000_003 + zlib.crc32(item_id.encode())) % (2**31)


@dataclass
class EvalItem:
    """One question. ``answer``: option index (multiple choice) or text (open-ended); None when unknown
    (EgoSchema outside the public subset). ``video`` is None when no file was found for ``video_id``."""

    item_id: str
    video_id: str
    video: Path | None
    question: str
    options: list[str] | None = None
    answer: int | str | None = None
    meta: dict = field(default_factory=dict)


class MissingVideo(Exception):
    """The video of an item cannot be had: no file, unreadable, or not in the token cache."""


def find_video(folder: Path | None, name: str, prefixes: tuple[str, ...] = ("",),
               extensions: tuple[str, ...] | None = None) -> Path | None:
    """The first ``folder / (prefix + name + ext)`` that exists (extensions of ``VIDEO_EXTENSIONS``, lower and
    upper case), or None."""
    from divot.constants import VIDEO_EXTENSIONS

    if folder is None:
        return None
    exts = extensions or VIDEO_EXTENSIONS
    for prefix in prefixes:
        for ext in exts:
            for suffix in (ext, ext.upper()):
                path = folder / f"{prefix}{name}{suffix}"
                if path.is_file():
                    return path
    return None


# What "cannot read this video" looks like when decoding or tokenizing it.
_UNREADABLE = (FileNotFoundError, OSError, ValueError, RuntimeError)


@dataclass(frozen=True)
class ClipDecoder:
    """``item -> clips``: the tokenizer's input (clips, 5, 3, S, S) of an item's video, or ``MissingVideo``.
    Small and model-free, so it can run in a DataLoader worker."""

    frame_size: int
    max_clips: int | None = None

    def __call__(self, item: EvalItem):
        from divot.constants import MAX_CLIPS
        from divot.data.loading import load_sparse_clips

        if item.video is None:
            raise MissingVideo("no video file")
        try:
            return load_sparse_clips(item.video, size=self.frame_size,
                                     max_clips=MAX_CLIPS if self.max_clips is None else self.max_clips)
        except _UNREADABLE as err:  # VideoDecodeError is a ValueError
            raise MissingVideo(f"unreadable: {err}") from err


class VideoTokens:
    """Clip tokens of an item's video: from ``cache`` (a ``TokenCache``, looked up by ``item.video_id``) when
    given, else decoded and tokenized (as ``Divot.tokens``). Raises ``MissingVideo`` saying why a video cannot
    be had."""

    def __init__(self, model, cache=None, max_clips: int | None = None):
        self.model, self.cache, self.max_clips = model, cache, max_clips

    def __call__(self, item: EvalItem):
        if self.cache is not None:
            return self._cached(item)
        return self.encode(ClipDecoder(self.model.tokenizer.config.frame_size, self.max_clips)(item))

    def _cached(self, item: EvalItem):
        if item.video_id not in self.cache:
            skipped = self.cache.skipped.get(item.video_id)
            reason = f"not in token cache ({skipped['error']})" if skipped else "not in token cache"
            raise MissingVideo(reason)
        tokens = self.cache[item.video_id].float()
        return tokens if self.max_clips is None else tokens[: self.max_clips]  # (clips, q, d)

    def encode(self, clips):
        """Tokens of decoded clips (clips, 5, 3, S, S) -> (clips, q, d), as ``Divot.tokens`` computes them."""
        try:
            return self.model.tokenizer.encode(clips, progress=False)  # (clips, q, d)
        except _UNREADABLE as err:
            raise MissingVideo(f"unreadable: {err}") from err

    def iterate(self, items: list[EvalItem], num_workers: int = 0):
        """``(item, tokens or MissingVideo)`` for every item, in order; ``num_workers`` DataLoader workers
        decode the next videos while the caller works on this one (a token cache needs none)."""
        from divot.data.prefetch import LoadFailed, prefetch

        if self.cache is not None:
            for item in items:
                try:
                    yield item, self._cached(item)
                except MissingVideo as err:
                    yield item, err
            return
        decoder = ClipDecoder(self.model.tokenizer.config.frame_size, self.max_clips)
        for item, clips in prefetch(items, decoder, num_workers, errors=(MissingVideo,)):
            if isinstance(clips, LoadFailed):
                yield item, MissingVideo(clips.error)
                continue
            try:
                yield item, self.encode(clips)
            except MissingVideo as err:
                yield item, err


class PredictionLog:
    """The finished records of ``out``: ``records`` maps item id -> its latest record in ``predictions.jsonl``.
    ``append`` writes to ``predictions.jsonl``, or with ``rank`` to that rank's part file."""

    def __init__(self, out: Path, rank: int | None = None):
        out = Path(out)
        self.path = out / (PREDICTIONS_NAME if rank is None else part_name(rank))
        self.records: dict[str, dict] = {}
        merged = out / PREDICTIONS_NAME
        if merged.exists():
            self.records.update(read_records(merged))

    def done(self, item_id: str) -> bool:
        record = self.records.get(item_id)
        return record is not None and record.get("status") != MISSING

    def append(self, record: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as f:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
            f.flush()
        self.records[str(record["id"])] = record


def part_name(rank: int) -> str:
    """The prediction log of one rank of a multi-process run."""
    return f"predictions.rank{rank:05d}.jsonl"


def read_records(path: Path) -> dict[str, dict]:
    """id -> latest record of a JSON-lines log; a truncated last line (a kill mid-write) is cut off the file."""
    data = path.read_bytes()
    good = data.rfind(b"\n") + 1  # everything after the last newline is a line a kill cut short
    if good < len(data):
        logger.warning("%s: dropping a truncated last line (%d bytes)", path, len(data) - good)
        with path.open("r+b") as f:
            f.truncate(good)
    records: dict[str, dict] = {}
    for n, line in enumerate(data[:good].decode().splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}:{n}: not a JSON line ({err}); fix or remove the file") from err
        records[str(record["id"])] = record
    return records


def merge_parts(out: Path, items: list[EvalItem]) -> int:
    """Append the records of the ranks' part files to ``predictions.jsonl`` and remove the parts (rank 0 only,
    while no rank writes). Records come in the order of ``items`` (ids not among them after, in file order),
    an answered record wins over a missing-video one, and records already in ``predictions.jsonl`` are not
    written twice. Returns the number of records appended."""
    from divot.hub import atomic_write_text

    out = Path(out)
    parts = sorted(out.glob(PART_GLOB))
    if not parts:
        return 0
    merged_path = out / PREDICTIONS_NAME
    merged = read_records(merged_path) if merged_path.exists() else {}
    chosen: dict[str, dict] = {}
    for part in parts:
        for item_id, record in read_records(part).items():
            if chosen.get(item_id, {}).get("status") != ANSWERED:
                chosen[item_id] = record
    order = [it.item_id for it in items if it.item_id in chosen]
    listed = set(order)
    order += [i for i in chosen if i not in listed]
    new = [chosen[i] for i in order if merged.get(i) != chosen[i]]
    old = merged_path.read_text() if merged_path.exists() else ""
    atomic_write_text(merged_path, old + "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in new))
    for part in parts:
        part.unlink()
    logger.info("%s: merged %d records from %d rank files", merged_path, len(new), len(parts))
    return len(new)


def check_run_settings(out: Path, settings: dict) -> None:
    """Write ``run.json``, or check that an existing one (a run being resumed) has the same settings."""
    path = Path(out) / RUN_NAME
    settings = json.loads(json.dumps(settings, default=str))
    if path.exists():
        old = json.loads(path.read_text())
        if old != settings:
            diff = sorted(k for k in set(old) | set(settings) if old.get(k) != settings.get(k))
            raise ValueError(f"{out} holds predictions made with other settings ({', '.join(diff)} differ); "
                             "resume with the same settings or choose another --out")
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(settings, indent=1) + "\n")


def run_items(items: list[EvalItem], predict: Callable[[EvalItem, object], dict], tokens: VideoTokens,
              log: PredictionLog, desc: str, progress: bool = True, num_workers: int = 0) -> list[dict]:
    """Predict every item not already done in ``log``; returns the latest record of each item, in order.

    ``predict(item, clip_tokens)`` returns the task's fields; the log line adds ``id``, ``video_id``,
    ``status``, ``answer`` and the item's ``meta`` fields. ``num_workers`` processes decode videos ahead. A
    predictor made by ``batched`` with ``batch_size`` N > 1 answers N items (those whose video could be had) in
    one ``predict.batch`` call; the lines (missing videos among them) are written in item order when the batch
    is done, so ``predictions.jsonl`` is the same as with N = 1."""
    todo = [it for it in items if not log.done(it.item_id)]
    if len(todo) < len(items):
        logger.info("resuming: %d of %d items already in %s", len(items) - len(todo), len(items), log.path)
    batch_size = getattr(predict, "batch_size", 1) if hasattr(predict, "batch") else 1
    pending: list[tuple[EvalItem, dict, object]] = []  # in item order; a missing video waits with the batch
    for item, clips in tqdm(tokens.iterate(todo, num_workers), total=len(todo), desc=desc, disable=not progress):
        base = {"id": item.item_id, "video_id": item.video_id, "answer": item.answer, **item.meta}
        if batch_size > 1:
            pending.append((item, base, clips))
            if sum(not isinstance(c, MissingVideo) for _, _, c in pending) == batch_size:
                _answer_batch(predict, pending, log)
                pending = []
        elif isinstance(clips, MissingVideo):
            log.append({**base, "status": MISSING, "reason": str(clips)})
        else:
            log.append({**base, "status": ANSWERED, **predict(item, clips)})
    if pending:
        _answer_batch(predict, pending, log)
    return [log.records[it.item_id] for it in items]


def batched(predict: Callable[[EvalItem, object], dict], predict_batch: Callable[[list, list], list[dict]],
            batch_size: int = 1) -> Callable[[EvalItem, object], dict]:
    """``predict`` with ``predict.batch`` (several items at once: ``predict_batch(items, clips_list)`` -> one dict
    of fields per item) and ``predict.batch_size`` (how many items ``run_items`` hands it at a time)."""
    predict.batch, predict.batch_size = predict_batch, batch_size
    return predict


def _answer_batch(predict, pending: list[tuple[EvalItem, dict, object]], log: PredictionLog) -> None:
    """Answer the batch's items in one ``predict.batch`` call; log every item (missing videos too) in order."""
    ready = [(item, clips) for item, _, clips in pending if not isinstance(clips, MissingVideo)]
    fields = iter(predict.batch([item for item, _ in ready], [clips for _, clips in ready]) if ready else [])
    for _, base, clips in pending:
        if isinstance(clips, MissingVideo):
            log.append({**base, "status": MISSING, "reason": str(clips)})
        else:
            log.append({**base, "status": ANSWERED, **next(fields)})


def missing_summary(records: list[dict], max_listed: int = 1000) -> dict:
    """Counts and the list (id, video id, reason) of the items whose video was missing."""
    missing = [r for r in records if r["status"] == MISSING]
    listed = [{"id": r["id"], "video_id": r["video_id"], "reason": r["reason"]} for r in missing[:max_listed]]
    return {"missing_videos": len(missing), "missing_video_list": listed,
            "missing_video_list_truncated": len(missing) > max_listed}


def model_identity(model, name: str) -> dict:
    """How a result names its model: the --model value, the tokenizer identity and the LLM's base config."""
    from divot.data.token_cache import tokenizer_identity

    llm_config = model.llm.config
    return {"name": str(name), "tokenizer_id": tokenizer_identity(model.tokenizer)["id"],
            "llm_base": asdict(llm_config.base) if getattr(llm_config, "base", None) is not None else None,
            "num_queries": llm_config.num_queries, "token_dim": llm_config.token_dim}


def write_summary(out: Path, summary: dict) -> Path:
    path = Path(out) / SUMMARY_NAME
    atomic_write_text(path, json.dumps(summary, indent=1, default=str) + "\n")
    return path


def limit_items(items: list[EvalItem], limit: int | None) -> list[EvalItem]:
    return items if limit is None else items[:limit]


def open_cache(cfg: EvalConfig, model):
    """The token cache of ``cfg`` (checked against the model's tokenizer), or None."""
    if cfg.tokens_cache is None:
        return None
    from divot.data.token_cache import TokenCache

    return TokenCache(cfg.tokens_cache, expect_tokenizer=model.tokenizer)


def read_json(path: Path, what: str):
    try:
        return json.loads(Path(path).read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{what} {path} is not valid JSON: {err}") from err
