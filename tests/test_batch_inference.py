"""Batched ``Divot.ask`` / ``caption`` / ``generate_text``: greedy answers equal the one-at-a-time answers token
for token, with prompts of different lengths and different numbers of clips (so rows are left-padded), rows that
stop early, chunks of ``batch_size``; the pairing rules of videos and questions; left-padded collation."""

import pytest
import torch

from divot.llm.batch_generation import generate_ids_batch
from divot.llm.sequences import left_pad_prompts, pad_prompts

GREEDY = {"greedy": True, "max_new_tokens": 8}


@pytest.fixture(scope="module")
def model():
    from divot.chat import Divot
    from divot.llm import DivotLLM
    from divot.tokenizer import VideoTokenizer

    torch.manual_seed(0)
    llm = DivotLLM.from_preset("tiny")
    with torch.no_grad():  # wider random weights than the preset's: greedy answers then depend on the prompt
        for weight in llm.parameters():
            if weight.ndim == 2:
                weight.normal_(0.0, 0.2)
    return Divot.from_components(VideoTokenizer.from_preset("tiny"), llm)


def _video(seconds: int, seed: int) -> torch.Tensor:
    """Random uint8 frames (t, h, w, 3) at 8 fps: one 2-second clip per 16 frames."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (8 * seconds, 32, 32, 3), dtype=torch.uint8, generator=gen)


@pytest.fixture(scope="module")
def videos():
    return [_video(2, 1), _video(6, 2), _video(4, 3)]  # 1, 3 and 2 clips


QUESTIONS = ["what colour is the object?", "where does it go?", "what shape is the object and how does it move?"]


def test_videos_and_questions_give_prompts_of_different_lengths(model, videos):
    clips = [model.tokens(v).shape[0] for v in videos]
    assert clips == [1, 3, 2]
    lengths = {len(model.builder.qa_prompt(model.tokens(v), q)) for v, q in zip(videos, QUESTIONS, strict=True)}
    assert len(lengths) == 3  # every row of the batch is padded differently


def test_answers_depend_on_the_prompt_and_on_the_padding_mask(model, videos):
    """What makes the equality tests below able to fail: distinct answers, and padding that changes them when
    the pad columns are not masked."""
    llm = model.llm
    prompts = [model.builder.qa_prompt(model.tokens(v), q) for v, q in zip(videos, QUESTIONS, strict=True)]
    single = [llm.generate_ids(p, **GREEDY) for p in prompts]
    assert len({tuple(s) for s in single}) == 3
    batch = left_pad_prompts(prompts, llm.token_ids.pad)
    embeds = llm.embed(batch["input_ids"], batch["cmp_mask"], batch["cmp_clips"])
    unmasked = llm.llm.generate(inputs_embeds=embeds, attention_mask=torch.ones_like(batch["attention_mask"]),
                                generation_config=llm.generation_config(**GREEDY)).tolist()
    assert unmasked != single


def test_batched_ask_equals_unbatched_greedy(model, videos):
    batched = model.ask(videos, QUESTIONS, **GREEDY)
    single = [model.ask(v, q, **GREEDY) for v, q in zip(videos, QUESTIONS, strict=True)]
    assert isinstance(single[0], str) and batched == single
    assert model.ask(videos, QUESTIONS, batch_size=2, **GREEDY) == single  # chunks of 2 (sorted by length)


def test_batched_ids_equal_unbatched_ids_also_when_rows_stop_early(model, videos):
    llm = model.llm
    prompts = [model.builder.qa_prompt(model.tokens(v), q) for v, q in zip(videos, QUESTIONS, strict=True)]
    single = [llm.generate_ids(p, **GREEDY) for p in prompts]
    assert generate_ids_batch(llm, prompts, **GREEDY) == single
    k = next(k for k in range(1, 8) if single[1][k] not in single[1][:k])  # a token row 1 first writes at k
    stopped = [llm.generate_ids(p, stop_ids=[single[1][k]], **GREEDY) for p in prompts]
    assert len(stopped[1]) == k + 1 and len({len(s) for s in stopped}) > 1  # rows finish at different steps
    assert generate_ids_batch(llm, prompts, stop_ids=[single[1][k]], **GREEDY) == stopped


def test_one_video_several_questions_and_several_videos_one_question(model, videos):
    assert model.ask(videos[1], QUESTIONS, **GREEDY) == [model.ask(videos[1], q, **GREEDY) for q in QUESTIONS]
    assert model.ask(videos, QUESTIONS[0], **GREEDY) == [model.ask(v, QUESTIONS[0], **GREEDY) for v in videos]
    assert model.ask(videos[0], [QUESTIONS[0]], **GREEDY) == [model.ask(videos[0], QUESTIONS[0], **GREEDY)]


def test_batched_caption_and_generate_text(model, videos):
    assert model.caption(videos, **GREEDY) == [model.caption(v, **GREEDY) for v in videos]
    assert (model.caption(videos, "Describe the video.", **GREEDY)
            == [model.ask(v, "Describe the video.", **GREEDY) for v in videos])
    prompts = [model.builder.caption_prompt(model.tokens(v)) for v in videos]
    assert model.generate_text(prompts, batch_size=2, **GREEDY) == [model.generate_text(p, **GREEDY) for p in prompts]


def test_a_list_of_frames_is_one_video(model, videos):
    frames = [f.numpy() for f in videos[0]]  # (h, w, 3) arrays: one video, one answer
    assert model.ask(frames, QUESTIONS[0], **GREEDY) == model.ask(videos[0], QUESTIONS[0], **GREEDY)


def test_sampling_a_batch_is_reproducible_under_a_seed(model, videos):
    a = model.ask(videos, QUESTIONS, seed=3, max_new_tokens=8)
    assert model.ask(videos, QUESTIONS, seed=3, max_new_tokens=8) == a and len(a) == 3


def test_bad_batches_are_named(model, videos):
    with pytest.raises(ValueError, match="3 videos but 2 questions"):
        model.ask(videos, QUESTIONS[:2])
    with pytest.raises(ValueError, match="empty list"):
        model.ask(videos, [])
    with pytest.raises(ValueError, match="non-empty questions"):
        model.ask(videos, ["ok?", " ", "ok?"])
    with pytest.raises(ValueError, match="unknown decoding"):
        model.ask(videos, QUESTIONS, temprature=0.5)
    with pytest.raises(ValueError, match="batch_size"):
        model.ask(videos, QUESTIONS, batch_size=0)
    with pytest.raises(ValueError, match="empty list"):
        model.generate_text([])


def test_left_pad_prompts(model, videos):
    prompts = [model.builder.qa_prompt(model.tokens(v), q) for v, q in zip(videos[:2], QUESTIONS[:2], strict=True)]
    batch = left_pad_prompts(prompts, pad_token_id=model.llm.token_ids.pad)
    short, long = len(prompts[0]), len(prompts[1])
    assert batch["input_ids"].shape == (2, long) and short < long
    assert batch["attention_mask"][0].tolist() == [0] * (long - short) + [1] * short
    assert batch["position_ids"][0, long - short :].tolist() == list(range(short))  # 0 at the first real token
    assert torch.equal(batch["input_ids"][0, long - short :], prompts[0].input_ids)
    assert int(batch["cmp_mask"].sum()) == batch["cmp_clips"].shape[0] * model.llm.config.num_queries
    gen = model.builder.generation("a red circle", torch.zeros(1, model.llm.config.num_queries,
                                                                model.llm.config.token_dim))
    with pytest.raises(ValueError, match="generation query"):
        left_pad_prompts([gen], 0)


def test_right_padded_prompts_put_the_padding_after_the_last_real_token(model, videos):
    prompts = [model.builder.qa_prompt(model.tokens(v), q) for v, q in zip(videos[:2], QUESTIONS[:2], strict=True)]
    batch = pad_prompts(prompts, pad_token_id=model.llm.token_ids.pad, side="right")
    short, long = len(prompts[0]), len(prompts[1])
    assert batch["attention_mask"][0].tolist() == [1] * short + [0] * (long - short)
    assert batch["position_ids"][0, :short].tolist() == list(range(short))
    assert torch.equal(batch["input_ids"][0, :short], prompts[0].input_ids)
    assert torch.equal(batch["input_ids"][1], prompts[1].input_ids)
    with pytest.raises(ValueError, match="side"):
        pad_prompts(prompts, 0, side="middle")
