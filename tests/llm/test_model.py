import pytest
import torch

from divot.data.token_files import read_token_file
from divot.llm import DivotLLM, LLMCollator, SequenceBuilder, train_text_tokenizer, write_generated_tokens
from divot.llm.text_tokenizer import shapes_world_texts
from tests.llm.conftest import build_tiny, clips, tiny_config

Q, D = 16, 32


def mixed_batch(builder: SequenceBuilder) -> dict:
    samples = [builder.caption(clips(2, seed=1), "a red circle moves left"),
               builder.generation_instruction("a blue square grows", clips(1, seed=2), template="Show me a video of"),
               builder.story("Generate a story about a red circle.", ["a red circle moves left.", "then it grows."],
                             clips(2, seed=3)),
               builder.qa(clips(1, seed=4), [("what colour is the object?", "red")])]
    return LLMCollator(builder.ids.pad, Q)(samples)


def test_forward_losses_and_gradients(tiny_model, builder):
    batch = mixed_batch(builder)
    out = tiny_model(batch)
    assert set(out) == {"loss", "lm_loss", "gmm_loss"}
    assert torch.allclose(out["loss"], out["lm_loss"] + out["gmm_loss"])
    assert out["lm_loss"] > 0 and torch.isfinite(out["gmm_loss"])
    out["loss"].backward()
    for module in (tiny_model.input_proj, tiny_model.gmm_head):
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())
    # Without the precomputed 4D mask the model builds the same one.
    no_mask = {k: v for k, v in batch.items() if k != "attention_mask_4d"}
    with torch.no_grad():
        again = tiny_model(no_mask)
    assert torch.allclose(again["loss"], out["loss"].detach())


def test_label_smoothing_spreads_the_targets_over_the_vocabulary(tiny_model, builder):
    """forward(label_smoothing=e): the text loss against targets (1 - e) on the label + e / V everywhere,
    over the labelled positions only; the GMM loss is untouched."""
    from divot.constants import IGNORE_INDEX

    batch, e = mixed_batch(builder), 0.1
    with torch.no_grad():
        plain, smooth = tiny_model(batch), tiny_model(batch, label_smoothing=e)
        _, logits = tiny_model.hidden_and_logits(
            tiny_model.embed(batch["input_ids"], batch["cmp_mask"], batch["cmp_clips"]), batch["attention_mask_4d"])
    logp = logits[:, :-1].float().log_softmax(-1)
    labels = batch["labels"][:, 1:]
    keep = labels != IGNORE_INDEX
    nll = -logp[keep].gather(1, labels[keep][:, None])[:, 0]
    expected = ((1 - e) * nll - e * logp[keep].mean(-1)).mean()
    assert torch.allclose(plain["lm_loss"], nll.mean(), atol=1e-5)
    assert torch.allclose(smooth["lm_loss"], expected, atol=1e-5) and smooth["lm_loss"] > plain["lm_loss"]
    assert torch.equal(smooth["gmm_loss"], plain["gmm_loss"])


def test_query_blocks_are_bidirectional(tiny_model, builder):
    batch = LLMCollator(builder.ids.pad, Q)([builder.generation("a red circle", clips(1))])
    causal = {k: v for k, v in batch.items() if k != "attention_mask_4d"}
    causal["gen_mask"] = batch["gen_mask"]
    with torch.no_grad():
        full = tiny_model(batch)["gmm_loss"]
        from divot.llm.masks import build_attention_mask_4d
        causal["attention_mask_4d"] = build_attention_mask_4d(batch["attention_mask"])
        plain = tiny_model(causal)["gmm_loss"]
    assert not torch.allclose(full, plain)


def test_comprehension_positions_hold_projected_clips(tiny_model, builder):
    batch = mixed_batch(builder)
    with torch.no_grad():
        embeds = tiny_model.embed(batch["input_ids"], batch["cmp_mask"], batch["cmp_clips"])
        want = tiny_model.input_proj(batch["cmp_clips"]).reshape(-1, tiny_model.config.hidden_size)
        plain = tiny_model.llm.get_input_embeddings()(batch["input_ids"])
    assert torch.allclose(embeds[batch["cmp_mask"]], want)
    assert torch.equal(embeds[~batch["cmp_mask"]], plain[~batch["cmp_mask"]])


def test_count_check_names_both_numbers(tiny_model, builder):
    batch = mixed_batch(builder)
    bad = dict(batch, cmp_clips=batch["cmp_clips"][:-1])
    n_pos = int(batch["cmp_mask"].sum())
    with pytest.raises(ValueError, match=f"{n_pos} comprehension frame-token positions but 2 clip"):
        tiny_model(bad)
    bad = dict(batch, gen_clips=batch["gen_clips"][:1])
    with pytest.raises(ValueError, match=rf"{int(batch['gen_mask'].sum())} generation query positions but 1 "):
        tiny_model(bad)


@pytest.mark.parametrize("model_type", ["mistral", "llama", "qwen2"])
def test_save_load_round_trip(tokenizer, tmp_path, model_type):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = build_tiny(tokenizer, model_type)
    builder = SequenceBuilder.from_config(model.tokenizer, model.config)
    batch = mixed_batch(builder)
    with torch.no_grad():
        before = model(batch)
    model.save_pretrained(tmp_path / "m")
    assert (tmp_path / "m" / "llm" / "config.json").is_file()
    assert AutoModelForCausalLM.from_pretrained(str(tmp_path / "m" / "llm")).config.model_type == model_type
    assert len(AutoTokenizer.from_pretrained(str(tmp_path / "m" / "llm"))) == len(model.tokenizer)
    loaded = DivotLLM.from_pretrained(tmp_path / "m")
    assert loaded.config == model.config
    with torch.no_grad():
        after = loaded(batch)
    for k in before:
        assert torch.equal(before[k], after[k]), k


def test_strict_loading_names_missing_keys(tiny_model, tmp_path):
    from safetensors.torch import load_file, save_file

    tiny_model.save_pretrained(tmp_path / "m")
    state = load_file(str(tmp_path / "m" / "model.safetensors"))
    state.pop("gmm_head.proj.2.bias")
    save_file(state, str(tmp_path / "m" / "model.safetensors"))
    with pytest.raises(ValueError, match=r"missing key\(s\): gmm_head.proj.2.bias"):
        DivotLLM.from_pretrained(tmp_path / "m")


def test_special_token_initialisation(tmp_path):
    from transformers import AutoTokenizer

    train_text_tokenizer(shapes_world_texts(), tmp_path / "plain", add_divot_tokens=False)
    tokenizer = AutoTokenizer.from_pretrained(str(tmp_path / "plain"))
    old = len(tokenizer)
    config = tiny_config()
    torch.manual_seed(0)
    from transformers import AutoModelForCausalLM

    llm = AutoModelForCausalLM.from_config(config.base.to_hf(vocab_size=old))
    in_mean = llm.get_input_embeddings().weight.detach().mean(0).clone()
    out_mean = llm.get_output_embeddings().weight.detach().mean(0).clone()
    model = DivotLLM.from_llm(llm, tokenizer, config)
    assert len(tokenizer) == old + 262
    new_in = model.llm.get_input_embeddings().weight[old:]
    new_out = model.llm.get_output_embeddings().weight[old:]
    assert new_in.shape[0] == 262
    assert torch.allclose(new_in, in_mean.expand_as(new_in), atol=1e-6)
    assert torch.allclose(new_out, 3 * out_mean.expand_as(new_out), atol=1e-6)
    # Old rows untouched; adding the tokens again is a no-op.
    assert torch.equal(model.llm.get_input_embeddings().weight[:old], llm.get_input_embeddings().weight[:old])
    again = DivotLLM.from_llm(model.llm, tokenizer, config)
    assert again.llm.get_input_embeddings().weight.shape[0] == old + 262


def test_text_generation_never_emits_placeholders(tiny_model, builder):
    ids = builder.ids
    banned = ids.placeholders() + [ids.vid_start, ids.vid_end]
    with torch.no_grad():  # text logits 0, placeholder logits large: some placeholder always wins unsuppressed
        head = tiny_model.llm.get_output_embeddings().weight
        head.zero_()
        head[banned] = 10 * torch.randn(len(banned), head.shape[1], generator=torch.Generator().manual_seed(0))
    prompt = builder.qa_prompt(clips(1), "what colour is the object?")
    with torch.no_grad():
        logits = tiny_model.llm(inputs_embeds=tiny_model.embed(prompt.input_ids[None], prompt.cmp_mask[None],
                                                               prompt.cmp_clips)).logits[0, -1]
    assert int(logits.argmax()) in banned  # the test would catch a missing suppression
    for kwargs in ({"greedy": True}, {"greedy": False}, {"greedy": False, "temperature": 2.0, "top_p": 1.0}):
        torch.manual_seed(0)
        new = tiny_model.generate_ids(prompt, max_new_tokens=12, **kwargs)
        assert new and not set(new) & set(banned), kwargs
    assert isinstance(tiny_model.generate_text(prompt, max_new_tokens=5, greedy=True), str)
    # Greedy decoding is deterministic.
    assert tiny_model.generate_ids(prompt, max_new_tokens=8, greedy=True) == \
        tiny_model.generate_ids(prompt, max_new_tokens=8, greedy=True)


@pytest.mark.parametrize("mode", ["sample", "mean", "top"])
def test_video_generation_and_token_file(tiny_model, builder, tmp_path, mode):
    prompt = builder.generation_prompt("a red circle moves left")
    out = tiny_model.generate_video(prompt, num_clips=2, mode=mode, generator=torch.Generator().manual_seed(0))
    assert out.tokens.shape == (2, Q, D) and out.tokens.dtype == torch.float32
    seq = out.input_ids.tolist()
    assert seq[len(prompt)] == builder.ids.vid_start and seq[-1] == builder.ids.vid_end
    assert seq.count(builder.ids.frame_start) == 2
    path = write_generated_tokens(tmp_path / "gen.safetensors", out.tokens, ["a.mp4", "a.mp4"], [0, 1], mode, 0.1)
    back = read_token_file(path)
    assert torch.equal(back.tokens, out.tokens) and back.clip_index.tolist() == [0, 1]
    assert back.source == f"llm-gmm mode={mode} var_scale=0.1"
    if mode != "sample":  # deterministic modes
        again = tiny_model.generate_video(prompt, num_clips=2, mode=mode)
        assert torch.equal(again.tokens, out.tokens)


def test_video_generation_text_until_vid(tiny_model, builder):
    prompt = builder.generation_prompt("a red circle")
    out = tiny_model.generate_video(prompt, force_video=False, max_new_tokens=4, greedy=True)
    assert out.tokens.shape == (1, Q, D)
    assert out.input_ids.tolist().count(builder.ids.vid_start) == 1


def test_score_continuations_matches_full_forward(tiny_model, builder):
    prompt = builder.qa_prompt(clips(1), "what colour is the object?")
    options = ["red", "a blue square"]
    scores = tiny_model.score_continuations(prompt, options)
    for text, score in zip(options, scores, strict=True):
        cont = builder.encode(text)
        ids = torch.cat([prompt.input_ids, torch.tensor(cont)])[None]
        cmp = torch.cat([prompt.cmp_mask, torch.zeros(len(cont), dtype=torch.bool)])[None]
        with torch.no_grad():
            logits = tiny_model.llm(inputs_embeds=tiny_model.embed(ids, cmp, prompt.cmp_clips)).logits[0]
        logp = logits[len(prompt) - 1 : -1].float().log_softmax(-1)
        want = logp.gather(-1, torch.tensor(cont)[:, None]).sum()
        assert torch.allclose(score, want, atol=1e-4)


def test_tiny_preset_without_tokenizer():
    model = DivotLLM.from_preset("tiny")
    assert model.config.out_dim == 2 * 4 * 32 + 4 and model.config.hidden_size == 128
    assert len(model.tokenizer) == model.llm.get_input_embeddings().weight.shape[0]
    with pytest.raises(ValueError, match="needs a tokenizer"):
        DivotLLM.from_preset("paper")
    with pytest.raises(ValueError, match="unknown Divot-LLM preset"):
        DivotLLM.from_preset("huge")
