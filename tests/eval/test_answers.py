"""Answer parsing, normalised matching (the stemmer meets MSVD-QA's stemmed ground truths) and the bootstrap."""

import pytest

from divot.eval.answers import contains_match, exact_match, normalize_answer, parse_letter, stem
from divot.eval.bootstrap import bootstrap_ci

OPTIONS = ["a red circle", "blue", "moves left", "green", "yellow square"]


@pytest.mark.parametrize("plain, stemmed", [("grass", "gras"), ("wilderness", "wildernes"), ("playing", "play"),
                                            ("running", "run"), ("dogs", "dog"), ("puppies", "puppy"),
                                            ("dancing", "dance"), ("boxes", "box")])
def test_the_stemmer_maps_plain_words_onto_msvd_stems(plain, stemmed):
    assert stem(plain) == stem(stemmed)
    assert exact_match(plain, stemmed) and exact_match(stemmed, plain)


@pytest.mark.parametrize("word", ["man", "red", "sing", "thing", "string", "seed"])
def test_the_stemmer_leaves_short_or_vowelless_stems_alone(word):
    assert stem(word) == word


def test_normalize_strips_case_punctuation_and_articles():
    assert normalize_answer("The Grass!") == normalize_answer("gras") == "gra"
    assert normalize_answer("A man, playing.") == "man play"
    assert not exact_match("", "")  # an empty ground truth never matches


def test_exact_and_contains_match():
    assert exact_match("Playing", "play")
    assert not exact_match("a man is playing", "play")
    assert contains_match("a man is playing the guitar", "play")
    assert contains_match("two men", "man") is False  # "men" is not a stem of "man": no fuzzy matching
    assert not contains_match("display", "play")  # whole words only


@pytest.mark.parametrize("answer, index", [("B", 1), ("(C)", 2), ("D.", 3), ("E) yellow", 4), ("A", 0),
                                           ("The answer is C.", 2), ("Answer: (D)", 3), ("option b", 1),
                                           ("moves left", 2), ("A red circle", 0), ("Blue.", 1)])
def test_parse_letter_reads_letters_and_option_texts(answer, index):
    assert parse_letter(answer, OPTIONS) == index


@pytest.mark.parametrize("answer", ["", "   ", "F", "7E7E", "I am not sure", "purple", "Apple"])
def test_unparseable_answers_are_none_never_a_guess(answer):
    assert parse_letter(answer, OPTIONS) is None


def test_bootstrap_is_deterministic_and_brackets_the_mean():
    scores = [1, 0, 1, 1, 0, 1, 0, 1, 1, 1] * 5
    a, b = bootstrap_ci(scores, seed=3), bootstrap_ci(scores, seed=3)
    assert a == b
    assert a["ci_low"] < a["value"] == 0.7 < a["ci_high"]
    assert a["level"] == 0.95 and a["n"] == 50
    assert bootstrap_ci([1] * 10)["ci_low"] == 1.0
    assert bootstrap_ci([])["value"] is None
    with pytest.raises(ValueError, match="level"):
        bootstrap_ci(scores, level=1.5)
