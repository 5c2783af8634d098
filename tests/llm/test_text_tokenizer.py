import pytest

from divot.constants import SPECIAL_TOKENS
from divot.llm import train_text_tokenizer
from divot.llm.text_tokenizer import shapes_world_texts


def test_trains_a_llama_tokenizer_dir(tmp_path):
    from transformers import AutoTokenizer

    tok = train_text_tokenizer(shapes_world_texts(), tmp_path / "a", vocab_size=512)
    loaded = AutoTokenizer.from_pretrained(str(tmp_path / "a"))
    assert type(loaded).__name__ == "LlamaTokenizer"
    assert (loaded.unk_token_id, loaded.bos_token_id, loaded.eos_token_id, loaded.pad_token_id) == (0, 1, 2, 0)
    assert len(loaded) == len(tok) == 512 + len(SPECIAL_TOKENS)
    vocab = loaded.get_vocab()
    assert all(t in vocab for t in SPECIAL_TOKENS)
    text = "a red circle moves left. [INST] what colour is the object? [/INST]\n"
    ids = loaded(text, add_special_tokens=False).input_ids
    assert loaded.decode(ids) == text
    # Divot tokens are single tokens, never split.
    assert loaded("<frame_00007>", add_special_tokens=False).input_ids == [vocab["<frame_00007>"]]
    # Unseen characters fall back to bytes (like Mistral) rather than <unk>.
    assert 0 not in loaded("zebra ü", add_special_tokens=False).input_ids


def test_deterministic(tmp_path):
    a = train_text_tokenizer(shapes_world_texts(), tmp_path / "a")
    b = train_text_tokenizer(shapes_world_texts(), tmp_path / "b")
    assert a.get_vocab() == b.get_vocab()
    assert (tmp_path / "a" / "tokenizer.json").read_text() == (tmp_path / "b" / "tokenizer.json").read_text()


def test_vocab_too_small():
    with pytest.raises(ValueError, match="vocab_size must be >="):
        train_text_tokenizer(["abc"], vocab_size=100)
    with pytest.raises(ValueError, match="non-empty"):
        train_text_tokenizer(["", " "])
