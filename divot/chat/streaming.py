"""Streamed answers: text pieces while the LLM decodes, joining to exactly the non-streamed text.

``stream_text(model, prompt, seed=..., **decoding)`` runs the same ``generate`` call as ``Divot.generate_text``
(same ``GenerationConfig``, same seeding) in a worker thread and hands each new token id to a ``TextPieces``,
which decodes the ids so far and yields only what can no longer change:

- nothing while the last token is a byte-fallback token (``<0xE2>``: sentencepiece decodes a run of them
  together, as a character or as one ``\\ufffd`` per byte, only once the run has ended) or while the text ends
  in an incomplete UTF-8 sequence (``\\ufffd``, byte-level BPE);
- leading whitespace never (the non-streamed answer is ``.strip()``-ped), trailing whitespace only once text
  follows it;

so ``"".join(pieces) == model.generate_text(prompt, seed=seed, **decoding)`` for the same seed. Closing the
iterator early (``break`` in a ``for``, a client that disconnects) stops the decoding at the next token.
One generation at a time per model: the worker seeds torch's global generator as ``seeded`` does.
"""

from __future__ import annotations

import logging
import queue
import re
import threading
from collections.abc import Iterator

logger = logging.getLogger(__name__)

_DONE = object()
_BYTE_TOKEN = re.compile(r"<0x[0-9A-Fa-f]{2}>")


class TextPieces:
    """Incremental detokenization: ``push(ids)`` returns the new stable text, ``finish()`` the rest."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self.emitted = ""
        self.special = set(tokenizer.all_special_ids)  # skipped when decoding: a byte run goes on across them

    def _ends_in_byte_token(self) -> bool:
        last = next((i for i in reversed(self.ids) if i not in self.special), None)
        return last is not None and bool(_BYTE_TOKEN.fullmatch(str(self.tokenizer.convert_ids_to_tokens(last))))

    def _text(self) -> str:
        return self.tokenizer.decode(self.ids, skip_special_tokens=True).lstrip()

    def _take(self, text: str) -> str:
        if not text.startswith(self.emitted):  # the decoded prefix changed (should not happen with SPM / BPE)
            logger.warning("streamed text %r is no prefix of the decoded text %r", self.emitted, text)
            return ""
        piece = text[len(self.emitted):]
        self.emitted = text
        return piece

    def push(self, ids: list[int]) -> str:
        self.ids.extend(ids)
        if self._ends_in_byte_token():
            return ""
        text = self._text()
        if text.endswith("\ufffd"):
            return ""
        return self._take(text.rstrip())

    def finish(self) -> str:
        return self._take(self._text().rstrip())


class _IdStreamer:
    """A ``transformers`` streamer (``put`` / ``end``) that queues the new token ids and keeps them (``ids``); the
    first ``put`` (the prompt, empty when decoding from embeddings) is skipped."""

    def __init__(self):
        self.queue: queue.Queue = queue.Queue()
        self.ids: list[int] = []
        self._prompt_seen = False
        self.cancelled = threading.Event()

    def put(self, value) -> None:
        if not self._prompt_seen:
            self._prompt_seen = True
            return
        new = value.reshape(-1).tolist()
        self.ids.extend(new)
        self.queue.put(new)

    def end(self) -> None:
        self.queue.put(_DONE)


def _stopping(streamer: _IdStreamer):
    from transformers import StoppingCriteria, StoppingCriteriaList

    class Cancelled(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            import torch

            return torch.full((input_ids.shape[0],), streamer.cancelled.is_set(), dtype=torch.bool,
                              device=input_ids.device)

    return StoppingCriteriaList([Cancelled()])


class TextStream:
    """The text pieces of ``model.generate_text(prompt, seed=seed, **decoding)`` (``model``: a ``Divot``) as they
    are decoded: iterate it once. ``ids`` holds the new token ids decoded so far (all of them once the iteration
    has ended, the stop id included); ``close()`` stops the decoding at the next token. Nothing runs before the
    first ``next``."""

    def __init__(self, model, prompt, *, seed: int | None = None, **decoding):
        from divot.chat.checks import check_decoding, seeded

        check_decoding(decoding)
        llm = model.llm
        self._streamer = streamer = _IdStreamer()
        failure: list[BaseException] = []

        def work():
            try:
                with seeded(seed, model.device):
                    llm.generate_ids(prompt, streamer=streamer, stopping_criteria=_stopping(streamer), **decoding)
            except BaseException as error:  # re-raised in the consumer's thread
                failure.append(error)
                streamer.end()

        self._pieces = _pieces(llm.tokenizer, streamer, work, failure)

    @property
    def ids(self) -> list[int]:
        return list(self._streamer.ids)

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        return next(self._pieces)

    def close(self) -> None:
        self._pieces.close()


def stream_text(model, prompt, *, seed: int | None = None, **decoding) -> TextStream:
    """Text pieces of ``model.generate_text(prompt, seed=seed, **decoding)`` (``model``: a ``Divot``) as they are
    decoded (a ``TextStream``)."""
    return TextStream(model, prompt, seed=seed, **decoding)


def _pieces(tokenizer, streamer: _IdStreamer, work, failure: list) -> Iterator[str]:
    worker = threading.Thread(target=work, name="divot-stream", daemon=True)
    worker.start()
    text = TextPieces(tokenizer)
    try:
        while True:
            item = streamer.queue.get()
            if item is _DONE:
                break
            piece = text.push(item)
            if piece:
                yield piece
        worker.join()
        if failure:
            raise failure[0]
        rest = text.finish()
        if rest:
            yield rest
    finally:
        streamer.cancelled.set()  # a consumer that stopped early stops the decoding
        worker.join()
