"""Answer parsing and matching: option letters for multiple choice, normalised matches for open-ended QA.

Multiple choice (``parse_letter``): the first option letter the answer commits to. Accepted: a bare letter
("C"), a letter with punctuation or a prefix ("(C)", "C.", "Answer: C", "The answer is C"), or the full text
of exactly one option (checked first, so "A red circle" is that option, not the letter A). Anything else is unparseable (``None``): it is scored as wrong and counted, never
replaced by a guess.

Open-ended (``normalize_answer``): lower-case, punctuation -> spaces, the articles a / an / the dropped, and
every word stemmed by ``stem``, so both sides of a comparison go through the same function. MSVD-QA's ground
truths were stemmed by a crude suffix stripper ("gras", "wildernes"), so ``stem`` is a small deterministic
stripper chosen to make those forms meet the plain words:

1. words of 3 letters or fewer are kept as they are;
2. "ies" -> "y" (puppies -> puppy); otherwise up to two final "s" are stripped (grass, gras -> gra;
   wilderness, wildernes -> wilderne; boxes -> boxe);
3. then a final "ing" or "ed" is stripped when at least 3 letters with a vowel remain (playing -> play,
   played -> play; sing, thing, string, red, seed are kept), and a doubled final consonant other than l, s, z
   is undoubled (running -> runn -> run);
4. then a final "e" is stripped from words longer than 3 letters (make, making -> mak; boxe -> box).

It is not a linguistic stemmer (Porter keeps "grass" and cannot meet "gras"); it only has to map a word and
its MSVD-QA stem to the same string. ``exact_match``: equal normalised strings. ``contains_match``: the
normalised ground truth occurs as a run of whole words inside the normalised prediction.
"""

from __future__ import annotations

import re
import string

LETTERS = "ABCDE"
ARTICLES = frozenset({"a", "an", "the"})
_PUNCT = re.compile(f"[{re.escape(string.punctuation)}]")
_VOWELS = set("aeiouy")


def option_letters(num_options: int) -> str:
    if not 1 <= num_options <= 26:
        raise ValueError(f"expected 1 to 26 options, got {num_options}")
    return string.ascii_uppercase[:num_options]


def parse_letter(answer: str, options: list[str] | None = None, num_options: int = 5) -> int | None:
    """The index of the option ``answer`` names, or None when it names none (unparseable).

    Example::

        parse_letter("(B) a red circle") -> 1;  parse_letter("The answer is E.") -> 4;  parse_letter("?") -> None
    """
    letters = option_letters(len(options) if options else num_options)
    text = answer.strip()
    if not text:
        return None
    if options:  # the text of exactly one option first: "A red circle" is an option, not the letter A
        norm = normalize_answer(text)
        hits = [i for i, opt in enumerate(options) if normalize_answer(opt) == norm]
        if len(hits) == 1:
            return hits[0]
    # a leading letter on its own: "C", "C.", "(C)", "C) text", "C: text"
    m = re.match(rf"^[\(\[]?([{letters}])(?:[\)\]\.:,]|\s|$)", text)
    if m:
        return letters.index(m.group(1))
    # "answer is C", "Answer: (C)", "option C"
    m = re.search(rf"\b(?:answer|option|choice)(?:\s+is)?\s*[:\-]?\s*[\(\[]?([{letters}])\b", text, re.IGNORECASE)
    if m and m.group(1).upper() in letters:
        return letters.index(m.group(1).upper())
    return None


def _undouble(word: str) -> str:
    if len(word) >= 2 and word[-1] == word[-2] and word[-1] not in "lsz" and word[-1] not in _VOWELS:
        return word[:-1]
    return word


def stem(word: str) -> str:
    """The module docstring's suffix stripper: ``stem("grass") == stem("gras")``, ``stem("playing") ==
    stem("play")``."""
    w = word.lower()
    if len(w) <= 3:
        return w
    if w.endswith("ies") and len(w) > 4:
        w = w[:-3] + "y"
    else:
        for _ in range(2):
            if w.endswith("s") and len(w) > 3:
                w = w[:-1]
    for suffix in ("ing", "ed"):
        if w.endswith(suffix):
            base = w[: -len(suffix)]
            if len(base) >= 3 and _VOWELS & set(base):
                w = _undouble(base)
            break
    if w.endswith("e") and len(w) > 3:
        w = w[:-1]
    return w


def normalize_answer(text: str, stemmed: bool = True) -> str:
    """Lower-case, punctuation to spaces, articles dropped, words stemmed (``stem``), single spaces."""
    words = _PUNCT.sub(" ", text.lower()).split()
    words = [w for w in words if w not in ARTICLES]
    return " ".join(stem(w) if stemmed else w for w in words)


def exact_match(prediction: str, truth: str) -> bool:
    """Equal after ``normalize_answer`` (an empty ground truth never matches)."""
    t = normalize_answer(truth)
    return bool(t) and normalize_answer(prediction) == t


def contains_match(prediction: str, truth: str) -> bool:
    """The normalised ground truth is a run of whole words of the normalised prediction."""
    t = normalize_answer(truth).split()
    p = normalize_answer(prediction).split()
    if not t:
        return False
    return any(p[i : i + len(t)] == t for i in range(len(p) - len(t) + 1))
