"""``Conversation``: multi-turn questions about one video, in the Mistral-Instruct template.

The prompt of turn n is the QA instruction-tuning format (DESIGN section 6) with the earlier turns' answers and an
open last turn::

    <s>[INST] <vid> clips </vid> q1 [/INST]\\n a1[INST] q2 [/INST]\\n a2 ... [INST] qn [/INST]\\n

i.e. ``SequenceBuilder.qa`` over the history plus (qn, "") without its final ``</s>``: exactly the layout the
model was trained on, so follow-ups see the video, the questions and the answers so far.
"""

from __future__ import annotations

from collections.abc import Iterator

from divot.llm.sequences import LLMSample


class Conversation:
    """A chat about one video (or none: a text-only chat). Decoding options given here apply to every turn.

    Example::

        chat = model.chat("clip.mp4", seed=0)
        chat.ask("What colour is the object?")    # 'red'
        chat.ask("And what does it do?")          # sees the first question and answer
        chat.history                              # [('What colour is the object?', 'red'), ...]
        chat.reset()                              # forget the turns, keep the video
        chat.set_video("other.mp4")               # a new video starts a new conversation
    """

    def __init__(self, model, video=None, *, seed: int | None = None, **decoding):
        self.model = model
        self.seed = seed
        self.decoding = dict(decoding)
        self._turns: list[tuple[str, str]] = []
        self.clips = None  # (clips, q, d) tokens of the video, None for a text-only chat
        if video is not None:
            self.set_video(video)

    @property
    def history(self) -> list[tuple[str, str]]:
        """The (question, answer) turns so far, oldest first (a copy)."""
        return list(self._turns)

    def add_turns(self, turns: list[tuple[str, str]]) -> None:
        """Append (question, answer) turns as if they had been asked here (e.g. a history a client sends back)."""
        for turn in turns:
            question, answer = turn
            if not isinstance(question, str) or not isinstance(answer, str):
                raise ValueError(f"a turn is (question, answer) strings, got {turn!r}")
            self._turns.append((question, answer))

    def reset(self) -> None:
        """Forget every turn; the video stays."""
        self._turns.clear()

    def set_video(self, video, max_clips: int | None = None, progress: bool = False) -> None:
        """Talk about another video (any input ``Divot.tokens`` takes); the history is cleared, because the video
        opens the first turn of the prompt."""
        self.clips = self.model.tokens(video, max_clips=max_clips, progress=progress)
        self._turns.clear()

    def prompt(self, question: str) -> LLMSample:
        """The LLM prompt for asking ``question`` next: the history's turns, then ``question`` (see the module
        docstring)."""
        if not isinstance(question, str) or not question.strip():
            raise ValueError(f"expected a non-empty question, got {question!r}")
        full = self.model.builder.qa(self.clips, [*self._turns, (question, "")])  # ends with </s>
        return _drop_last(full)

    def ask(self, question: str, *, seed: int | None = None, stream: bool = False, **decoding):
        """Answer ``question`` given the video and the earlier turns, and add the turn to the history.

        ``seed`` / ``decoding`` override the conversation's options for this turn. ``stream=True`` returns an
        iterator of text pieces (joined: the answer ``stream=False`` gives); the turn joins the history when the
        iterator is exhausted (an answer abandoned half-way is not kept)."""
        options = {**self.decoding, **decoding}
        prompt = self.prompt(question)
        seed = self.seed if seed is None else seed
        if stream:
            return self._stream(question, self.model.generate_text(prompt, seed=seed, stream=True, **options))
        answer = self.model.generate_text(prompt, seed=seed, **options)
        self._turns.append((question, answer))
        return answer

    def _stream(self, question: str, pieces) -> Iterator[str]:
        answer = []
        for piece in pieces:
            answer.append(piece)
            yield piece
        self._turns.append((question, "".join(answer)))

    def __len__(self) -> int:
        return len(self._turns)

    def __repr__(self) -> str:
        video = "no video" if self.clips is None else f"{self.clips.shape[0]} clip(s)"
        return f"Conversation({video}, {len(self)} turn(s))"


def _drop_last(sample: LLMSample) -> LLMSample:
    """The sample without its last position (the closing ``</s>``); clip tokens are unchanged."""
    return LLMSample(input_ids=sample.input_ids[:-1], labels=sample.labels[:-1], cmp_mask=sample.cmp_mask[:-1],
                     gen_mask=sample.gen_mask[:-1], cmp_clips=sample.cmp_clips, gen_clips=sample.gen_clips)
