import random

import pytest
import torch

from divot.constants import IGNORE_INDEX
from divot.llm import GENERATION_TEMPLATES, LLMCollator, SequenceBuilder
from divot.llm.masks import allowed_attention
from divot.llm.tokens import video_text
from tests.llm.conftest import clips

Q, D = 16, 32


@pytest.fixture(params=["reference", "pieces"])
def b(tokenizer, request):
    return SequenceBuilder(tokenizer, Q, D, sequence_format=request.param)


def labelled(b, sample) -> list[int]:
    return [int(t) for t in sample.labels if t != IGNORE_INDEX]


def check_common(b, sample, n_cmp: int, n_gen: int):
    ids = b.ids
    assert sample.input_ids[0] == ids.bos
    # Labels are the ids themselves where set.
    keep = sample.labels != IGNORE_INDEX
    assert torch.equal(sample.labels[keep], sample.input_ids[keep])
    # Frame markers and frame tokens never carry a label.
    frame_like = torch.isin(sample.input_ids, torch.tensor(ids.placeholders()))
    assert not keep[frame_like].any()
    assert int(sample.cmp_mask.sum()) == n_cmp * Q and sample.cmp_clips.shape == (n_cmp, Q, D)
    assert int(sample.gen_mask.sum()) == n_gen * Q and sample.gen_clips.shape == (n_gen, Q, D)
    marked = sample.cmp_mask | sample.gen_mask
    frames = torch.tensor(ids.frames[:Q] * (n_cmp + n_gen))
    assert torch.equal(sample.input_ids[marked], frames)
    assert not (sample.cmp_mask & sample.gen_mask).any()


def test_caption(b):
    v = clips(2)
    s = b.caption(v, "a red circle moves left")
    check_common(b, s, n_cmp=2, n_gen=0)
    assert torch.equal(s.cmp_clips, v)
    assert labelled(b, s) == b.encode("a red circle moves left") + [b.ids.eos]
    assert s.input_ids[1] == b.ids.vid_start and s.input_ids[-1] == b.ids.eos


def test_generation_pretraining_labels_eos_only(b):
    v = clips(1)
    s = b.generation("a red circle", v)
    check_common(b, s, n_cmp=0, n_gen=1)
    assert torch.equal(s.gen_clips, v)
    assert labelled(b, s) == [b.ids.eos]
    assert s.input_ids.tolist()[: 1 + len(b.encode("a red circle"))] == [b.ids.bos] + b.encode("a red circle")


def test_qa_multi_turn(b):
    v = clips(3)
    turns = [("what colour is the object?", "red"), ("what shape is the red object?", "circle")]
    s = b.qa(v, turns)
    check_common(b, s, n_cmp=3, n_gen=0)
    assert labelled(b, s) == b.encode("red") + b.encode("circle") + [b.ids.eos]
    text = b.tokenizer.decode(s.input_ids)
    assert text.count("[INST]") == 2 and text.count("[/INST]\n") == 2
    video = [b.ids.vid_start, *b.ids.clip(Q) * 3, b.ids.vid_end]
    if b.sequence_format == "reference":  # one call per turn, "\n" before a later [INST] (DESIGN section 6)
        want = (b.encode("[INST] " + video_text(3, Q) + turns[0][0] + " [/INST]\n") + b.encode("red")
                + b.encode("\n[INST] " + turns[1][0] + " [/INST]\n") + b.encode("circle"))
    else:  # [INST], the video and " question [/INST]\n" encoded separately
        want = (b.encode("[INST]") + video + b.encode(" " + turns[0][0] + " [/INST]\n") + b.encode("red")
                + b.encode("[INST]") + b.encode(" " + turns[1][0] + " [/INST]\n") + b.encode("circle"))
    assert s.input_ids.tolist() == [b.ids.bos] + want + [b.ids.eos]
    with pytest.raises(ValueError, match="at least one"):
        b.qa(clips(1), [])


def test_divot_tokens_in_text_are_rejected(b):
    with pytest.raises(ValueError, match="question 1 contains '<vid>'"):
        b.qa_prompt(clips(1), "what is <vid> here?")
    with pytest.raises(ValueError, match="caption contains '<frame_00003>'"):
        b.caption(clips(1), "a <frame_00003> circle")
    with pytest.raises(ValueError, match="unknown sequence_format"):
        SequenceBuilder(b.tokenizer, Q, D, sequence_format="chat")


def test_generation_instruction_random_template(b):
    seen = set()
    rng = random.Random(0)
    for _ in range(30):
        s = b.generation_instruction("a blue square grows", clips(1), rng=rng)
        check_common(b, s, n_cmp=0, n_gen=1)
        assert labelled(b, s) == [b.ids.vid_start, b.ids.vid_end, b.ids.eos]
        text = b.tokenizer.decode(s.input_ids, skip_special_tokens=True)
        seen |= {t for t in GENERATION_TEMPLATES if t in text}
    assert seen == set(GENERATION_TEMPLATES)
    s = b.generation_instruction("a cat", clips(1), template="Show me a video of")
    assert "[INST] Show me a video of a cat [/INST]\n" in b.tokenizer.decode(s.input_ids, skip_special_tokens=True)


def test_story(b):
    texts = ["a red circle moves left.", "then it grows.", "then a blue square appears."]
    v = clips(3)
    s = b.story("Generate a story about a red circle.", texts, v)
    check_common(b, s, n_cmp=0, n_gen=3)
    want = []
    for t in texts:
        want += b.encode(t) + [b.ids.vid_start, b.ids.vid_end]
    assert labelled(b, s) == want + [b.ids.eos]
    assert torch.equal(s.gen_clips, v)
    with pytest.raises(ValueError, match="one clip per text"):
        b.story("x", texts[:2], v)


def test_bad_clip_shape_and_length(b, tokenizer):
    with pytest.raises(ValueError, match=r"\(clips, 16, 32\)"):
        b.caption(torch.zeros(1, 8, 32), "x")
    short = SequenceBuilder(tokenizer, Q, D, max_length=10)
    with pytest.raises(ValueError, match="exceeds max_length 10"):
        short.caption(clips(1), "a red circle")


def test_prompts_have_no_labels(b):
    for s in (b.qa_prompt(clips(1), "what colour?"), b.caption_prompt(clips(2)), b.generation_prompt("a cat")):
        assert (s.labels == IGNORE_INDEX).all() and s.input_ids[-1] != b.ids.eos
    assert b.tokenizer.decode(b.generation_prompt("a cat").input_ids).endswith("[/INST]\n")


def test_collator(b):
    samples = [b.caption(clips(2, seed=1), "a red circle"), b.story("tell", ["a.", "b."], clips(2, seed=2)),
               b.generation("a cat", clips(1, seed=3))]
    batch = LLMCollator(b.ids.pad, Q)(samples)
    bsz, s = 3, max(len(x) for x in samples)
    assert batch["input_ids"].shape == (bsz, s) and batch["attention_mask_4d"].shape == (bsz, 1, s, s)
    assert batch["cmp_clips"].shape == (2, Q, D) and batch["gen_clips"].shape == (3, Q, D)
    assert torch.equal(batch["gen_clips"], torch.cat([samples[1].gen_clips, samples[2].gen_clips]))
    assert batch["num_cmp_clips"].tolist() == [2, 0, 0] and batch["num_gen_clips"].tolist() == [0, 2, 1]
    for i, x in enumerate(samples):
        n = len(x)
        assert torch.equal(batch["input_ids"][i, :n], x.input_ids)
        assert (batch["input_ids"][i, n:] == b.ids.pad).all() and (batch["labels"][i, n:] == IGNORE_INDEX).all()
        assert batch["attention_mask"][i].tolist() == [1] * n + [0] * (s - n)
    allowed = allowed_attention(batch["attention_mask"], batch["gen_mask"], Q)
    assert torch.equal(batch["attention_mask_4d"][:, 0] == 0, allowed)
    # Inside a query block attention is bidirectional; the two story clips do not see each other ahead.
    pos = batch["gen_mask"][1].nonzero().flatten()
    first, second = pos[:Q], pos[Q:]
    assert allowed[1][first[0], first[-1]] and not allowed[1][first[0], second[0]]
    assert allowed[1][second[0], first[-1]]


def test_collator_pad_multiple_and_errors(b):
    batch = LLMCollator(b.ids.pad, Q, pad_to_multiple_of=64)([b.caption(clips(1), "a")])
    assert batch["input_ids"].shape[1] % 64 == 0
    with pytest.raises(ValueError, match="empty"):
        LLMCollator(b.ids.pad, Q)([])
    with pytest.raises(ValueError, match="q=8"):
        LLMCollator(b.ids.pad, 8)([b.caption(clips(1), "a")])
