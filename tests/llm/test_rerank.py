"""Noisy-channel caption reranking (``divot.llm.rerank``): beam candidates, the channel term, the ranking."""

import pytest
import torch

from divot.llm.gmm import gmm_log_prob, split_gmm_params
from divot.llm.masks import build_attention_mask_4d
from divot.llm.rerank import (
    AnswerCheck,
    answer_logprobs,
    beam_candidates,
    channel_logprob,
    check_logprob,
    rerank_captions,
    sampled_candidates,
)
from tests.llm.conftest import clips

Q, D = 16, 32


def test_beam_candidates_are_distinct_text_ids_cut_after_the_end_token(tiny_model, builder):
    prompt = builder.caption_prompt(clips(1))
    cands = beam_candidates(tiny_model, prompt, num_beams=4, max_new_tokens=5)
    assert 1 <= len(cands) <= 4 and len({tuple(c) for c in cands}) == len(cands)
    banned = set(builder.ids.placeholders()) | {builder.ids.vid_start, builder.ids.vid_end}
    for c in cands:
        assert c and not banned & set(c)
        assert len(c) <= 5 and (builder.ids.eos not in c or c[-1] == builder.ids.eos)
    with pytest.raises(ValueError, match="num_candidates must be >= 1"):
        beam_candidates(tiny_model, prompt, 0)


def test_sampled_candidates_are_distinct_reproducible_and_clean(tiny_model, builder):
    prompt = builder.caption_prompt(clips(1))
    cands = sampled_candidates(tiny_model, prompt, num_samples=12, temperature=1.5, seed=3, max_new_tokens=4)
    assert 1 <= len(cands) <= 12 and len({tuple(c) for c in cands}) == len(cands)
    assert sampled_candidates(tiny_model, prompt, 12, temperature=1.5, seed=3, max_new_tokens=4) == cands
    banned = set(builder.ids.placeholders()) | {builder.ids.vid_start, builder.ids.vid_end}
    assert all(c and len(c) <= 4 and not banned & set(c) for c in cands)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        sampled_candidates(tiny_model, prompt, 4, temperature=0.0)


def test_sampled_candidates_put_the_most_frequent_sample_first(tiny_model, builder, monkeypatch):
    import divot.llm.rerank as rerank

    draws = [[5, 2], [6, 2], [6, 2], [7, 2], [6, 2], [7, 2]]
    monkeypatch.setattr(rerank, "_generate", lambda *a, **k: draws)
    assert sampled_candidates(tiny_model, builder.caption_prompt(clips(1)), 6) == [[6, 2], [7, 2], [5, 2]]


def test_score_continuation_ids_agrees_with_the_text_scores(tiny_model, builder):
    prompt = builder.caption_prompt(clips(1))
    texts = ["a red circle moves left", "a blue square"]
    by_text = tiny_model.score_continuations(prompt, texts)
    by_ids = tiny_model.score_continuation_ids(prompt, [builder.encode(t) for t in texts])
    assert torch.allclose(by_text, by_ids)
    with pytest.raises(ValueError, match="no token ids"):
        tiny_model.score_continuation_ids(prompt, [[]])


def test_channel_term_is_the_gmm_log_density_of_the_clip_after_the_generation_prompt(tiny_model, builder):
    video = clips(2, seed=3)
    got = channel_logprob(tiny_model, builder, "a red circle moves left", video, template="Generate a video of")
    sample = builder.generation_instruction("a red circle moves left", video, template="Generate a video of")
    ids = sample.input_ids[None]
    gen = sample.gen_mask[None]
    with torch.no_grad():
        embeds = tiny_model.embed(ids, sample.cmp_mask[None], sample.cmp_clips)
        mask = build_attention_mask_4d(torch.ones_like(ids), gen, Q)
        hidden, _ = tiny_model.hidden_and_logits(embeds, mask)
        gmm = split_gmm_params(tiny_model.gmm_head(hidden[gen]), tiny_model.config.gmm_components, D,
                               tiny_model.config.var_min)
        want = gmm_log_prob(gmm, video.reshape(-1, D)).sum()
    assert got == pytest.approx(float(want), rel=1e-4, abs=1e-2)
    # A caption changes the density the clip gets.
    assert channel_logprob(tiny_model, builder, "a blue square grows", video) != pytest.approx(got)


def test_rerank_orders_by_caption_plus_weighted_channel(tiny_model, builder):
    video = clips(1, seed=5)
    ranked = rerank_captions(tiny_model, builder, video, num_candidates=4, channel_weight=0.5, max_new_tokens=5)
    scores = [r.score for r in ranked]
    assert scores == sorted(scores, reverse=True)
    for r in ranked:
        assert r.score == pytest.approx(r.caption_logprob + 0.5 * r.channel_logprob)
        assert r.channel_logprob == pytest.approx(channel_logprob(tiny_model, builder, r.text, video), rel=1e-5)
    # Weight 0: the caption model's own order, i.e. beam search's best first.
    plain = rerank_captions(tiny_model, builder, video, num_candidates=4, channel_weight=0.0, max_new_tokens=5)
    assert [r.score for r in plain] == sorted(r.caption_logprob for r in plain)[::-1]
    with pytest.raises(ValueError, match="channel_weight and check_weight must be >= 0"):
        rerank_captions(tiny_model, builder, video, channel_weight=-1.0)


def test_an_answer_check_reads_the_earliest_answer_a_caption_names():
    shape = AnswerCheck("what shape is the object?", ("circle", "square", "cross"))
    assert shape.answer_of("a red Square moves left") == "square"
    assert shape.answer_of("a green cross circle moves up") == "cross"  # the earliest mention wins
    assert shape.answer_of("a red squares moves") is None  # whole words only
    with pytest.raises(ValueError, match="at least two non-empty answers"):
        AnswerCheck("what shape?", ("circle",))


def test_answer_checks_add_the_weighted_log_probability_of_the_captions_answer(tiny_model, builder):
    video = clips(1, seed=5)
    check = AnswerCheck("what shape is the object?", ("circle", "square", "triangle", "diamond", "cross"))
    answers = answer_logprobs(tiny_model, builder, video, check)
    assert set(answers) == set(check.answers)
    assert sum(torch.tensor(list(answers.values())).exp()) == pytest.approx(1.0, abs=1e-5)  # normalised
    assert check_logprob("a red cross", [check], [answers]) == pytest.approx(answers["cross"])
    assert check_logprob("a red blob", [check], [answers]) == pytest.approx(min(answers.values()))
    ranked = rerank_captions(tiny_model, builder, video, num_candidates=4, channel_weight=0.1, max_new_tokens=5,
                             checks=[check], check_weight=2.0)
    assert [r.score for r in ranked] == sorted((r.score for r in ranked), reverse=True)
    for r in ranked:
        assert r.check_logprob == pytest.approx(check_logprob(r.text, [check], [answers]), abs=1e-5)
        assert r.score == pytest.approx(r.caption_logprob + 0.1 * r.channel_logprob + 2.0 * r.check_logprob)
