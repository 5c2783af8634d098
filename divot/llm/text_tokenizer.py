"""A small sentencepiece text tokenizer saved as a Hugging Face Llama tokenizer directory.

Mistral's tokenizer is a sentencepiece BPE model with byte fallback and ``<unk>`` / ``<s>`` / ``</s>`` at ids
0 / 1 / 2; this trains the same kind of model on a handful of texts (the shapes world: seconds, deterministic) so
tests and the bundled tiny model go through the same code path as Mistral. The result is a
``transformers.LlamaTokenizer`` (tokenizers backend) with the Divot tokens added and pad = ``<unk>``; it loads
with ``AutoTokenizer.from_pretrained(dir)``.
"""

from __future__ import annotations

import io
import logging
import tempfile
from collections.abc import Iterable
from pathlib import Path

from divot.llm.tokens import add_special_tokens, save_text_tokenizer

logger = logging.getLogger(__name__)

NUM_BYTE_PIECES = 256  # byte fallback: <0x00> .. <0xFF>


def train_text_tokenizer(texts: Iterable[str], out_dir: str | Path | None = None, vocab_size: int = 512,
                         add_divot_tokens: bool = True):
    """Train a sentencepiece BPE model (byte fallback, like Mistral's) on ``texts`` and return it as a
    ``LlamaTokenizer``; saved to ``out_dir`` if given. ``vocab_size`` counts the 256 byte pieces and the 3
    control tokens, not the Divot tokens (a soft limit: fewer pieces if the texts have no more merges)."""
    import sentencepiece as spm
    from transformers import LlamaTokenizer

    texts = [t for t in texts if t and t.strip()]
    if not texts:
        raise ValueError("train_text_tokenizer: expected some non-empty texts, got none")
    chars = {c for t in texts for c in t if not c.isspace()}
    minimum = NUM_BYTE_PIECES + 3 + len(chars) + 1
    if vocab_size < minimum:
        raise ValueError(f"vocab_size must be >= {minimum} (256 bytes + 3 control + {len(chars)} characters + 1), "
                         f"got {vocab_size}")
    proto = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts), model_writer=proto, vocab_size=vocab_size, model_type="bpe",
        byte_fallback=True, character_coverage=1.0, unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
        num_threads=1, hard_vocab_limit=False, split_digits=True, normalization_rule_name="identity",
        add_dummy_prefix=True, remove_extra_whitespaces=False, shuffle_input_sentence=False,
        max_sentence_length=1 << 14, minloglevel=2,
    )
    sp = spm.SentencePieceProcessor(model_proto=proto.getvalue())
    # Same conversion transformers does for a tokenizer.model (without needing protobuf).
    vocab = {sp.id_to_piece(i): i for i in range(sp.get_piece_size())}
    tokenizer = LlamaTokenizer(vocab=vocab, merges=_merges_by_id(vocab), unk_token="<unk>", bos_token="<s>",
                               eos_token="</s>", add_bos_token=True, add_eos_token=False, legacy=False,
                               add_prefix_space=True)
    tokenizer.pad_token = tokenizer.unk_token
    if add_divot_tokens:
        add_special_tokens(tokenizer)
    if out_dir is not None:
        save_text_tokenizer(tokenizer, out_dir)
        logger.info("saved a %d-token text tokenizer to %s", len(tokenizer), out_dir)
    return tokenizer


def _merges_by_id(vocab: dict[str, int]) -> list[tuple[str, str]]:
    """BPE merges of a sentencepiece vocabulary, ranked by the merged piece's id (a BPE model's pieces are stored
    in merge order), then by the split's pieces: what ``transformers``' ``generate_merges(vocab)`` gives in 5.25,
    whose signature differs between 5.x releases (5.17 requires scores), hence this copy."""
    merges = []
    for piece, piece_id in vocab.items():
        splits = [(piece[:k], piece[k:], piece_id) for k in range(1, len(piece))
                  if piece[:k] in vocab and piece[k:] in vocab]
        merges.extend(sorted(splits, key=lambda m: (vocab[m[0]], vocab[m[1]])))
    merges.sort(key=lambda m: (m[2], len(m[0]), len(m[1])))
    return [(left, right) for left, right, _ in merges]


def shapes_world_texts() -> list[str]:
    """Every kind of text the shapes world produces: captions, questions, answers, stories, prompts."""
    from divot.data.shapes.world import COLOURS, MOTION_WORDS, MOTIONS, SHAPES
    from divot.llm.sequences import GENERATION_TEMPLATES, INST_END, INST_START

    texts = []
    for colour in COLOURS:
        for shape in SHAPES:
            noun = f"{colour} {shape}"
            for motion in MOTIONS:
                texts += [f"a {noun} {motion}", f"a {noun} {motion}.", f"then the {noun} {motion}.",
                          f"then it {motion}."]
            texts += [f"then a {noun} appears.", f"Generate a story about a {noun}.",
                      f"What colour is the {shape}?", f"What shape is the {colour} object?",
                      f"What does the {colour} object do?", f"what colour is the {shape}?",
                      f"what shape is the {colour} object?", f"how does the {colour} object move?"]
    texts += [f"{t} a red circle" for t in GENERATION_TEMPLATES]
    texts += ["What colour is the object?", "What shape is the object?", "What does the object do?",
              "what colour is the object?", "what shape is the object?", "how does the object move?",
              "Describe the video.", "Answer with the option's letter from the given choices directly.",
              "Options: (A) red (B) green (C) blue (D) yellow (E) cyan", "A B C D E 0 1 2 3 4 5 6 7 8 9",
              f"{INST_START} question{INST_END}answer"]
    texts += list(COLOURS) + list(SHAPES) + list(MOTIONS) + list(MOTION_WORDS.values())
    return texts


def build_shapes_tokenizer(out_dir: str | Path | None = None, vocab_size: int = 512):
    """The shapes-world tokenizer with the Divot tokens (deterministic). Saved to ``out_dir`` if given;
    otherwise it round-trips through a temporary directory so it is exactly what ``AutoTokenizer`` loads."""
    from transformers import AutoTokenizer

    if out_dir is not None:
        train_text_tokenizer(shapes_world_texts(), out_dir, vocab_size)
        return AutoTokenizer.from_pretrained(str(out_dir))
    with tempfile.TemporaryDirectory() as tmp:
        train_text_tokenizer(shapes_world_texts(), tmp, vocab_size)
        return AutoTokenizer.from_pretrained(tmp)
