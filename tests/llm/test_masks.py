import pytest
import torch

from divot.llm.masks import (
    allowed_attention,
    build_attention_mask_4d,
    query_block_ids,
    rebase_additive,
    reference_mask_to_4d,
)


def brute_force(valid: list[int], blocks: list[int]) -> torch.Tensor:
    """Row i sees j iff (j <= i and j is real) or i, j are in the same query block (block id > 0)."""
    s = len(valid)
    out = torch.zeros(s, s, dtype=torch.bool)
    for i in range(s):
        for j in range(s):
            out[i, j] = (j <= i and valid[j] == 1) or (blocks[i] > 0 and blocks[i] == blocks[j])
    return out


def layout(prefix: int, block: int, clips: int, gap: int, pad: int):
    """prefix text, then `clips` query blocks of `block` positions separated by `gap` tokens, then padding."""
    valid, gen, blocks = [1] * prefix, [False] * prefix, [0] * prefix
    for c in range(clips):
        valid += [1] * block + [1] * gap
        gen += [True] * block + [False] * gap
        blocks += [c + 1] * block + [0] * gap
    valid += [0] * pad
    gen += [False] * pad
    blocks += [0] * pad
    return valid, gen, blocks


@pytest.mark.parametrize("block,clips,gap,pad", [(1, 1, 1, 0), (4, 2, 2, 3), (16, 1, 3, 2), (5, 3, 1, 0), (3, 0, 0, 4)])
def test_mask_matches_brute_force(block, clips, gap, pad):
    valid, gen, blocks = layout(prefix=3, block=block, clips=clips, gap=gap, pad=pad)
    attn = torch.tensor([valid])
    gen_mask = torch.tensor([gen])
    want = brute_force(valid, blocks)
    for block_size in (None, block):
        got = allowed_attention(attn, gen_mask, block_size)[0]
        assert torch.equal(got, want)
    mask = build_attention_mask_4d(attn, gen_mask, block)
    assert mask.shape == (1, 1, len(valid), len(valid))
    assert set(mask.unique().tolist()) <= {0.0, torch.finfo(torch.float32).min}
    assert torch.equal(mask[0, 0] == 0, want)


def test_reference_convention_equals_ours():
    valid, gen, _ = layout(prefix=2, block=4, clips=2, gap=2, pad=2)
    ref = torch.tensor([[(-1 if g else v) for v, g in zip(valid, gen, strict=True)]])
    assert torch.equal(reference_mask_to_4d(ref, 4), build_attention_mask_4d(torch.tensor([valid]),
                                                                               torch.tensor([gen]), 4))
    with pytest.raises(ValueError, match="values"):
        reference_mask_to_4d(torch.tensor([[1, 2, 0]]))


def test_batch_rows_are_independent():
    a = layout(prefix=1, block=4, clips=1, gap=1, pad=3)
    b = layout(prefix=5, block=4, clips=1, gap=0, pad=0)
    attn = torch.tensor([a[0], b[0]])
    gen = torch.tensor([a[1], b[1]])
    mask = allowed_attention(attn, gen, 4)
    assert torch.equal(mask[0], brute_force(a[0], a[2]))
    assert torch.equal(mask[1], brute_force(b[0], b[2]))


def test_abutting_blocks_are_split_by_block_size():
    gen = torch.tensor([[False, True, True, True, True, False]])
    assert query_block_ids(gen).tolist() == [[0, 1, 1, 1, 1, 0]]
    assert query_block_ids(gen, 2).tolist() == [[0, 1, 1, 2, 2, 0]]
    allowed = allowed_attention(torch.ones(1, 6), gen, 2)[0]
    assert allowed[1, 2] and not allowed[1, 3] and allowed[3, 4] and allowed[4, 1]
    with pytest.raises(ValueError, match="multiples of block_size=3"):
        query_block_ids(gen, 3)


def test_padding_queries_get_no_block():
    attn = torch.tensor([[1, 1, 1, 0, 0]])
    gen = torch.tensor([[False, True, True, True, True]])  # the last two are padding
    allowed = allowed_attention(attn, gen)[0]
    assert not allowed[:, 3:].any()
    assert allowed[1, 2]


def test_rebase_to_bfloat16_keeps_finite_min():
    mask = build_attention_mask_4d(torch.tensor([[1, 1, 0]]))
    bf = rebase_additive(mask, torch.bfloat16)
    assert bf.dtype == torch.bfloat16 and torch.isfinite(bf).all()
    assert torch.equal(bf == 0, mask == 0)


def _decoder_masks(model) -> list[torch.Tensor]:
    """Records the attention mask each call of the LLM's decoder receives."""
    seen = []
    decoder = model.llm.get_decoder()
    decoder.register_forward_pre_hook(lambda module, args, kwargs: seen.append(kwargs["attention_mask"]),
                                      with_kwargs=True)
    return seen


def test_padding_mask_path_equals_the_4d_mask_without_queries(tiny_model, builder):
    """A batch without generation queries (captions, QA; padded to the longest) runs on its padding mask (b, s);
    its losses and gradients equal those of the 4D additive mask (causal + padding) to float tolerance."""
    from divot.llm import LLMCollator
    from tests.llm.conftest import clips

    samples = [builder.caption(clips(2, seed=1), "a red circle moves left"),
               builder.qa(clips(1, seed=2), [("what colour is the object?", "red")]),
               builder.caption(clips(1, seed=3), "a blue square")]
    batch = LLMCollator(builder.ids.pad, 16)(samples)
    assert not batch["gen_mask"].any() and not batch["attention_mask"].all()  # padded, no queries
    seen = _decoder_masks(tiny_model)
    results = []
    for drop in ("attention_mask_4d", "attention_mask"):  # the padding-mask path, then the 4D path
        tiny_model.zero_grad()
        out = tiny_model({k: v for k, v in batch.items() if k != drop})
        out["loss"].backward()
        results.append((out, {n: p.grad.clone() for n, p in tiny_model.named_parameters() if p.grad is not None}))
    assert [m.ndim for m in seen] == [2, 4]
    (a, grads_a), (b, grads_b) = results
    for key in ("loss", "lm_loss", "gmm_loss"):
        assert torch.allclose(a[key], b[key], atol=1e-6), (key, a[key], b[key])
    assert grads_a.keys() == grads_b.keys()
    assert all(torch.allclose(grads_a[n], grads_b[n], atol=1e-6) for n in grads_a)


def test_queries_keep_the_4d_mask(tiny_model, builder):
    from divot.llm import LLMCollator
    from tests.llm.conftest import clips

    batch = LLMCollator(builder.ids.pad, 16)([builder.caption(clips(1, seed=1), "a red circle"),
                                              builder.generation("a blue square", clips(1, seed=2))])
    seen = _decoder_masks(tiny_model)
    with torch.no_grad():
        tiny_model(batch)
        tiny_model({k: v for k, v in batch.items() if k != "attention_mask_4d"})  # built from gen_mask
    assert [m.ndim for m in seen] == [4, 4]
    assert torch.equal(seen[1] == 0, seen[0] == 0)


def test_llm_mask_rejects_other_shapes():
    from divot.llm.masks import llm_mask

    pad = torch.tensor([[1, 1, 0]])
    assert llm_mask(pad, torch.bfloat16) is pad
    assert llm_mask(build_attention_mask_4d(pad), torch.bfloat16).dtype == torch.bfloat16
    with pytest.raises(ValueError, match="padding mask"):
        llm_mask(torch.ones(1, 3, 3), torch.float32)
