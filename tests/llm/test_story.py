"""The story generation loop: cached decoding equals recomputing the whole sequence with the training mask."""

import pytest
import torch

from divot.llm import build_attention_mask_4d
from divot.llm.story import generate_story, sample_next

from .conftest import clips


def _reference_story(model, prompt, num_segments, max_new_tokens):
    """Greedy story with every step a full forward pass under the 4D training mask (no cache)."""
    ids = model.token_ids
    q = model.config.num_queries
    seq, gen = prompt.input_ids.tolist(), [False] * len(prompt)
    banned = ids.placeholders() + [ids.vid_end]
    texts, tokens = [], []

    def run():
        input_ids = torch.tensor([seq])
        embeds = model.embed(input_ids)
        mask = build_attention_mask_4d(torch.ones_like(input_ids), torch.tensor([gen]), q)
        return model.hidden_and_logits(embeds, mask)

    for _ in range(num_segments):
        start = len(seq)
        for _ in range(max_new_tokens):
            logits = run()[1][0, -1].clone()
            logits[banned] = float("-inf")
            token = int(logits.argmax())
            if token in (ids.vid_start, ids.eos):
                break
            seq.append(token)
            gen.append(False)
        texts.append(model.tokenizer.decode(seq[start:], skip_special_tokens=True).strip())
        seq += [ids.vid_start, ids.frame_start, *ids.frames[:q], ids.frame_end, ids.vid_end]
        gen += [False, False] + [True] * q + [False, False]
        hidden = run()[0][0]
        tokens.append(model.gmm_head.predict(hidden[-(q + 2):-2], "mean"))
    return texts, torch.stack(tokens), seq


@torch.no_grad()
def test_cached_story_equals_full_recompute(tiny_model, builder):
    prompt = builder.story_prompt("Generate a story about a red circle.")
    got = generate_story(tiny_model, prompt, num_segments=3, greedy=True, mode="mean", max_new_tokens=6)
    texts, tokens, seq = _reference_story(tiny_model, prompt, 3, 6)
    assert got.texts == texts
    assert got.input_ids.tolist() == seq
    assert torch.allclose(got.tokens, tokens, atol=1e-5)
    assert got.tokens.shape == (3, tiny_model.config.num_queries, tiny_model.config.token_dim)
    assert len(got.forced_video) == 3


@torch.no_grad()
def test_the_loop_appends_the_clip_block_of_the_training_format(tiny_model, builder):
    """What the loop appends after each text is exactly the story row's clip block in a training sample."""
    texts = ["a red circle moves left.", "then it stays still."]
    sample = builder.story("Generate a story about a red circle.", texts, clips(2))
    ids = tiny_model.token_ids
    gen = sample.gen_mask
    assert int(gen.sum()) == 2 * tiny_model.config.num_queries
    q = tiny_model.config.num_queries
    story = generate_story(tiny_model, builder.story_prompt("Generate a story."), num_segments=1, greedy=True,
                           max_new_tokens=2)
    block = story.input_ids[-(q + 4):].tolist()  # the loop's <vid> <frame> queries </frame> </vid>
    assert block == [ids.vid_start, ids.frame_start, *ids.frames[:q], ids.frame_end, ids.vid_end]
    seq = sample.input_ids.tolist()
    where = [i for i, t in enumerate(seq) if t == ids.vid_start]
    assert [seq[i:i + len(block)] for i in where] == [block, block]


def test_sampling_is_reproducible_and_respects_top_p():
    logits = torch.tensor([3.0, 2.9, -5.0, -6.0])
    draws = {sample_next(logits, False, 1.0, 0.5, torch.Generator().manual_seed(s)) for s in range(50)}
    assert draws <= {0, 1}  # top-p 0.5 keeps the two leading tokens
    a = [sample_next(logits, False, 0.7, 0.9, torch.Generator().manual_seed(3)) for _ in range(3)]
    assert len(set(a)) == 1
    assert sample_next(logits, True, 0.7, 0.5, None) == 0


def test_bad_arguments_are_named(tiny_model, builder):
    prompt = builder.story_prompt("Generate a story.")
    with pytest.raises(ValueError, match="num_segments"):
        generate_story(tiny_model, prompt, num_segments=0)
    with pytest.raises(ValueError, match="max_new_tokens"):
        generate_story(tiny_model, prompt, max_new_tokens=0)
