"""Every sequence format, token for token, against the reference's strings with Mistral-7B's real tokenizer.

The reference builds each prompt as one string and encodes it in one call (DESIGN section 6): ``enc(s)`` =
``tokenizer.encode(s, add_special_tokens=False)``, V(n) = ``<vid>`` + n x (``<frame>`` + 64 frame tokens +
``</frame>``) + ``</vid>``. The expected ids below come from those strings, in both sentencepiece ``legacy``
modes; a few are also pinned as literal ids, so a tokenizer library that changed its output would be caught.
"""

import pytest
import torch

from divot.constants import IGNORE_INDEX
from divot.eval.multiple_choice import GEN_TEMPLATE, LL_TEMPLATE
from divot.llm import DivotLLM, SequenceBuilder, llm_preset
from divot.llm.tokens import video_text

Q = 64  # the released model's frame tokens per clip
D = 4  # token width does not change any id
BOS, EOS = 1, 2
# Released vocabulary: Mistral's 32,000 pieces, then <img> </img> <vid> </vid> <frame> </frame> <frame_00000>...
IMG, IMG_END, VID, VID_END, FRAME, FRAME_END, FRAME0 = range(32000, 32007)
CLIP = [FRAME, *range(FRAME0, FRAME0 + Q), FRAME_END]
QUESTION, ANSWER = "What colour is the object?", "red"
LATER_Q, LATER_A = "And its shape?", "A circle"


@pytest.fixture(params=[True, False], ids=["legacy", "non-legacy"])
def legacy(request):
    return request.param


@pytest.fixture()
def tok(mistral_tokenizer_factory, legacy):
    return mistral_tokenizer_factory(legacy)


@pytest.fixture()
def b(tok):
    return SequenceBuilder(tok, Q, D)


def enc(tok, text: str) -> list[int]:
    return tok.encode(text, add_special_tokens=False)


def V(n: int) -> str:
    return video_text(n, Q)


def clips(n: int) -> torch.Tensor:
    return torch.zeros(n, Q, D)


def test_released_vocabulary(tok):
    assert len(tok) == 32262
    assert tok.convert_tokens_to_ids(["<img>", "</img>", "<vid>", "</vid>", "<frame>", "</frame>", "<frame_00000>",
                                      "<frame_00255>"]) == [IMG, IMG_END, VID, VID_END, FRAME, FRAME_END, FRAME0,
                                                            32261]
    assert (tok.bos_token_id, tok.eos_token_id) == (BOS, EOS)


def test_qa_prompt_pinned_ids(b, legacy):
    """Literal ids: the ▁ before <vid> (28705) in both modes; the question's first word after </vid> is ▁What
    (1824) in legacy mode and What (3195) without."""
    s = b.qa_prompt(clips(2), QUESTION)
    what = 1824 if legacy else 3195
    assert s.input_ids.tolist() == ([BOS, 733, 16289, 28793, 28705, VID, *CLIP * 2, VID_END,
                                     what, 11474, 349, 272, 1928, 28804, 733, 28748, 16289, 28793, 13])
    # The clip tokens: positions 7..70 and 73..136 are replaced by the projected clip tokens.
    want = [p for c in range(2) for p in range(7 + c * (Q + 2), 7 + c * (Q + 2) + Q)]
    assert s.cmp_mask.nonzero().flatten().tolist() == want
    assert not s.gen_mask.any() and (s.labels == IGNORE_INDEX).all()


def test_qa_multi_turn_pinned_tail(b, legacy):
    """After the first answer, a later turn is enc("\\n[INST] " + q + " [/INST]\\n"): ▁ <0x0A> [ INST ] ..."""
    s = b.qa(clips(1), [(QUESTION, ANSWER), (LATER_Q, LATER_A)])
    ids = s.input_ids.tolist()
    tail = ids[ids.index(VID_END) + 1:]
    what = 1824 if legacy else 3195
    assert tail == [what, 11474, 349, 272, 1928, 28804, 733, 28748, 16289, 28793, 13, 2760,
                    28705, 13, 28792, 16289, 28793, 1015, 871, 5843, 28804, 733, 28748, 16289, 28793, 13,
                    330, 9661, EOS]
    labelled = [t for t in s.labels.tolist() if t != IGNORE_INDEX]
    assert labelled == [2760, 330, 9661, EOS]  # ▁red, ▁A ▁circle (answers encoded on their own), </s>


def test_every_format_is_the_reference_string(b, tok):
    cap = "A red circle moves left."
    template = "Generate a video of"
    cases = {
        "caption": (b.caption(clips(2), cap), [BOS] + enc(tok, V(2)) + enc(tok, cap) + [EOS]),
        "caption_prompt": (b.caption_prompt(clips(2)), [BOS] + enc(tok, V(2))),
        "generation": (b.generation(cap, clips(1)), [BOS] + enc(tok, cap) + enc(tok, V(1)) + [EOS]),
        "qa": (b.qa(clips(3), [(QUESTION, ANSWER), (LATER_Q, LATER_A)]),
               [BOS] + enc(tok, "[INST] " + V(3) + QUESTION + " [/INST]\n") + enc(tok, ANSWER)
               + enc(tok, "\n[INST] " + LATER_Q + " [/INST]\n") + enc(tok, LATER_A) + [EOS]),
        "qa without video": (b.qa(None, [(QUESTION, ANSWER)]),
                             [BOS] + enc(tok, "[INST] " + QUESTION + " [/INST]\n") + enc(tok, ANSWER) + [EOS]),
        "qa_prompt": (b.qa_prompt(clips(3), QUESTION), [BOS] + enc(tok, "[INST] " + V(3) + QUESTION + " [/INST]\n")),
        "generation_instruction": (
            b.generation_instruction(cap, clips(1), template=template),
            [BOS] + enc(tok, "[INST] " + template + " " + cap + " [/INST]\n") + enc(tok, V(1)) + [EOS]),
        "generation_prompt": (b.generation_prompt(cap, template=template),
                              [BOS] + enc(tok, "[INST] " + template + " " + cap + " [/INST]\n")),
        "generation_prompt pretrain": (b.generation_prompt(cap, instruct=False), [BOS] + enc(tok, cap)),
        "story": (b.story("Tell a story.", ["A red circle.", "Then it grows."], clips(2)),
                  [BOS] + enc(tok, "[INST] Tell a story. [/INST]\n") + enc(tok, "A red circle.") + enc(tok, V(1))
                  + enc(tok, "Then it grows.") + enc(tok, V(1)) + [EOS]),
        "story_prompt": (b.story_prompt("Tell a story."), [BOS] + enc(tok, "[INST] Tell a story. [/INST]\n")),
    }
    for name, (sample, want) in cases.items():
        assert sample.input_ids.tolist() == want, name
        marked = sample.cmp_mask | sample.gen_mask
        n = len(sample.cmp_clips) + len(sample.gen_clips)
        assert sample.input_ids[marked].tolist() == list(range(FRAME0, FRAME0 + Q)) * n, name


def test_pieces_encoding_differs_as_documented(tok, legacy):
    """The older "pieces" encoding lacks the ▁ before <vid> and (non-legacy) gives ▁What for What."""
    ref = SequenceBuilder(tok, Q, D).qa_prompt(clips(1), QUESTION).input_ids.tolist()
    old = SequenceBuilder(tok, Q, D, sequence_format="pieces").qa_prompt(clips(1), QUESTION).input_ids.tolist()
    assert ref[:5] == [BOS, 733, 16289, 28793, 28705] and old[:5] == [BOS, 733, 16289, 28793, VID]
    assert old[old.index(VID_END) + 1] == 1824 and ref[ref.index(VID_END) + 1] == (1824 if legacy else 3195)


def test_eval_chat_and_ask_prompts(tok, shapes_video, monkeypatch):
    """divot eval's multiple-choice prompts (both modes), ask and chat history send the reference's strings,
    through ``Divot`` itself (a tiny model on Mistral's real tokenizer)."""
    from divot.chat import Divot
    from divot.eval.multiple_choice import mc_text
    from divot.eval.runner import EvalItem
    from divot.tokenizer import VideoTokenizer

    torch.manual_seed(0)
    config = llm_preset("tiny")
    llm = DivotLLM.from_llm(config.base.to_hf(vocab_size=len(tok)), tok, config)
    model = Divot.from_components(VideoTokenizer.from_preset("tiny"), llm)
    q = config.num_queries
    video = video_text(1, q)
    prompts, answers = [], iter(["red", "a circle"])
    monkeypatch.setattr(model.llm, "generate_text", lambda prompt, **kw: prompts.append(prompt) or next(answers))

    clip_tokens = model.tokens(shapes_video)
    item = EvalItem(item_id="q1", video_id="x", video=None, question=QUESTION, options=["red", "blue"], answer=0)
    for template in (LL_TEMPLATE, GEN_TEMPLATE):
        text = mc_text(item, template)
        assert model.builder.qa_prompt(clip_tokens, text).input_ids.tolist() == (
            [BOS] + enc(tok, "[INST] " + video_text(len(clip_tokens), q) + text + " [/INST]\n"))
    assert len(clip_tokens) == 1
    chat = model.chat(shapes_video)
    assert chat.ask(QUESTION) == "red"
    chat.ask(LATER_Q)
    first = [BOS] + enc(tok, "[INST] " + video + QUESTION + " [/INST]\n")
    assert prompts[0].input_ids.tolist() == first  # = model.ask(video, QUESTION)
    assert prompts[1].input_ids.tolist() == first + enc(tok, "red") + enc(tok, "\n[INST] " + LATER_Q + " [/INST]\n")


def test_legacy_mode_survives_saving_and_conversion(mistral_tokenizer_factory, tmp_path):
    """transformers 5 drops ``legacy`` when saving; ``save_text_tokenizer`` keeps it, and the LLM converter reads
    a released folder without the key as the reference's transformers 4 did (legacy=True)."""
    import json

    from transformers import AutoTokenizer

    from divot.convert.llm import reference_tokenizer_mode
    from divot.llm.tokens import save_text_tokenizer

    after_vid = []
    for legacy in (True, False):
        save_text_tokenizer(mistral_tokenizer_factory(legacy), tmp_path / str(legacy))
        again = AutoTokenizer.from_pretrained(str(tmp_path / str(legacy)))
        after_vid.append(enc(again, "</vid>What")[1])
    assert after_vid == [1824, 3195]
    released = tmp_path / "released"
    mistral_tokenizer_factory(True).save_pretrained(str(released))  # as transformers writes it: no legacy key
    assert "legacy" not in json.loads((released / "tokenizer_config.json").read_text())
    assert reference_tokenizer_mode(released) == {"legacy": True}
    loaded = AutoTokenizer.from_pretrained(str(released), **reference_tokenizer_mode(released))
    assert enc(loaded, "</vid>What")[1] == 1824
    assert reference_tokenizer_mode(tmp_path / "False") == {}
