"""Generation defaults stored with a model directory (``generation.json``): the file, the named sets, and how
``Divot.generate_video`` / ``render`` / ``tell_story`` take their settings from it. The de-tokenizer's ``decode``
is replaced by a recorder that returns grey frames at once, so the published 50 reference steps cost nothing."""

import inspect
import json
import logging
import shutil

import pytest
import torch

from divot import Divot
from divot.chat.generation_defaults import (
    DEFAULT_TEMPLATE,
    GENERATION_FILE,
    LIBRARY_DEFAULTS,
    PUBLISHED,
    RENDER_KEYS,
    SHAPES_DEMO,
    GenerationDefaults,
)
from divot.convert.detokenizer import generation_defaults_path
from divot.diffusion import Detokenizer
from divot.llm import GENERATION_TEMPLATES, DivotLLM

PROMPT = "a red circle moves left"


@pytest.fixture
def calls(monkeypatch):
    """What ``Detokenizer.decode`` and ``DivotLLM.generate_video`` were called with (the LLM still runs)."""
    seen = {"decode": [], "llm": []}
    generate_video = DivotLLM.generate_video

    def decode(self, tokens, **kwargs):
        seen["decode"].append(kwargs)
        cfg = self.config
        return torch.zeros(tokens.shape[0], cfg.num_frames, 3, cfg.frame_size, cfg.frame_size)

    def spy(self, prompt, **kwargs):
        seen["llm"].append((prompt, kwargs))
        return generate_video(self, prompt, **kwargs)

    monkeypatch.setattr(Detokenizer, "decode", decode)
    monkeypatch.setattr(DivotLLM, "generate_video", spy)
    return seen


@pytest.fixture(scope="module")
def loaded(divot_model_dir):
    return Divot.from_pretrained(divot_model_dir)


def _with(loaded, defaults):
    """The same tiny model with other generation defaults."""
    return Divot.from_components(loaded.tokenizer, loaded.llm, loaded.detokenizer, generation_defaults=defaults)


def _rendered_with(calls) -> dict:
    kwargs = calls["decode"][-1]
    return {k: kwargs[k] for k in RENDER_KEYS}


# -- the file ----------------------------------------------------------------------------------------------------------
def test_generation_json_round_trips(tmp_path):
    custom = GenerationDefaults(sampler="ddim", num_steps=7, guidance_scale=2.5, guidance_rescale=0.0, eta=0.0,
                                prompt_format="pretrain", open_video="sample", template=None)
    for defaults in (PUBLISHED, LIBRARY_DEFAULTS, SHAPES_DEMO, custom):
        path = defaults.save_pretrained(tmp_path)
        assert path == tmp_path / GENERATION_FILE
        assert GenerationDefaults.load(path) == defaults
    assert json.loads(path.read_text()) == {"sampler": "ddim", "num_steps": 7, "guidance_scale": 2.5,
                                            "guidance_rescale": 0.0, "eta": 0.0, "prompt_format": "pretrain",
                                            "open_video": "sample", "template": None}
    assert [p.name for p in tmp_path.iterdir()] == [GENERATION_FILE]  # written atomically: no temporary left
    # keys left out take the library defaults
    (tmp_path / GENERATION_FILE).write_text('{"num_steps": 50}')
    assert GenerationDefaults.from_model_dir(tmp_path) == GenerationDefaults(num_steps=50)


def test_the_named_sets():
    assert PUBLISHED.render_kwargs() == {"sampler": "reference", "num_steps": 50, "guidance_scale": 7.5,
                                         "guidance_rescale": 0.7, "eta": 1.0}
    assert PUBLISHED.prompt_format == "instruct" and PUBLISHED.template == GENERATION_TEMPLATES[0]
    assert PUBLISHED.open_video == "sample"  # the reference samples text until the model opens <vid>
    assert LIBRARY_DEFAULTS.render_kwargs() == {"sampler": "dpmsolver++", "num_steps": 20, "guidance_scale": 7.5,
                                                "guidance_rescale": 0.7, "eta": 1.0}
    assert (LIBRARY_DEFAULTS.prompt_format, LIBRARY_DEFAULTS.open_video) == ("instruct", "force")
    assert DEFAULT_TEMPLATE == LIBRARY_DEFAULTS.template == GENERATION_TEMPLATES[0]
    # before generation.json, Divot.render left eta to decode's own default: the library defaults keep it
    assert inspect.signature(Detokenizer.decode).parameters["eta"].default == LIBRARY_DEFAULTS.eta
    assert SHAPES_DEMO == GenerationDefaults(guidance_scale=3.0)


@pytest.mark.parametrize("data, key", [
    ({"sampler": "reference", "steps": 50}, "steps"),
    ({"num_steps": 0}, "num_steps"),
    ({"num_steps": "50"}, "num_steps"),
    ({"num_steps": True}, "num_steps"),
    ({"num_steps": None}, "num_steps"),
    ({"sampler": "plms"}, "sampler"),
    ({"guidance_scale": "high"}, "guidance_scale"),
    ({"guidance_scale": float("nan")}, "guidance_scale"),
    ({"guidance_rescale": 1.5}, "guidance_rescale"),
    ({"eta": -1}, "eta"),
    ({"prompt_format": "chat"}, "prompt_format"),
    ({"open_video": "yes"}, "open_video"),
    ({"template": 3}, "template"),
])
def test_loading_is_strict_and_names_the_file_and_the_key(tmp_path, data, key):
    path = tmp_path / GENERATION_FILE
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError) as info:
        GenerationDefaults.load(path)
    assert str(path) in str(info.value) and key in str(info.value)
    with pytest.raises(ValueError, match=key):
        GenerationDefaults.from_model_dir(tmp_path)


@pytest.mark.parametrize("text", ["[1, 2]", "{not json", '"reference"'])
def test_a_generation_json_that_is_not_an_object_is_named(tmp_path, text):
    path = tmp_path / GENERATION_FILE
    path.write_text(text)
    with pytest.raises(ValueError, match=str(path)):
        GenerationDefaults.load(path)


def test_a_bad_generation_json_stops_loading_the_model(divot_model_dir, tmp_path):
    root = tmp_path / "model"
    shutil.copytree(divot_model_dir, root)
    (root / GENERATION_FILE).write_text('{"sampler": "reference", "guidance": 7.5}')
    with pytest.raises(ValueError, match=r"generation\.json.*guidance"):
        Divot.from_pretrained(root)


# -- the model's defaults ----------------------------------------------------------------------------------------------
def test_a_directory_with_the_published_generation_json_generates_with_the_published_settings(
        divot_model_dir, tmp_path, calls):
    root = tmp_path / "model"
    shutil.copytree(divot_model_dir, root)
    PUBLISHED.save_pretrained(root)
    model = Divot.from_pretrained(root)
    assert model.generation_defaults == PUBLISHED
    video = model.generate_video(PROMPT, seed=0)
    assert _rendered_with(calls) == {"sampler": "reference", "num_steps": 50, "eta": 1.0, "guidance_scale": 7.5,
                                     "guidance_rescale": 0.7}
    (prompt, llm_kwargs), = calls["llm"]
    assert llm_kwargs["force_video"] is False  # text until the model opens <vid>, as the reference does
    assert "Generate a video of" in model.llm.tokenizer.decode(prompt.input_ids.tolist())
    assert video.settings["sampler"] == "reference" and video.settings["num_steps"] == 50
    assert video.settings["open_video"] == "sample" and isinstance(video.settings["text"], str)
    model.render(torch.zeros(1, model.llm.config.num_queries, model.llm.config.token_dim))
    assert _rendered_with(calls)["sampler"] == "reference" and _rendered_with(calls)["num_steps"] == 50
    model.tell_story("Generate a story.", num_segments=1, max_new_tokens=2, greedy=True)
    assert _rendered_with(calls) == PUBLISHED.render_kwargs()


def test_explicit_arguments_override_the_model_defaults(loaded, calls):
    model = _with(loaded, PUBLISHED)
    explicit = {"sampler": "ddim", "num_steps": 2, "eta": 0.0, "guidance_scale": 1.0, "guidance_rescale": 0.0}
    video = model.generate_video(PROMPT, open_video="force", **explicit)
    assert _rendered_with(calls) == explicit
    assert calls["llm"][-1][1]["force_video"] is True and video.settings["text"] == ""
    model.render(torch.zeros(1, model.llm.config.num_queries, model.llm.config.token_dim), num_steps=3)
    assert _rendered_with(calls) == {**PUBLISHED.render_kwargs(), "num_steps": 3}  # the rest stays the model's
    model.tell_story("Generate a story.", num_segments=1, max_new_tokens=2, greedy=True, sampler="euler", eta=0.5)
    assert _rendered_with(calls) == {**PUBLISHED.render_kwargs(), "sampler": "euler", "eta": 0.5}
    for bad, key in (({"sampler": "plms"}, "sampler"), ({"num_steps": 0}, "num_steps"),
                     ({"prompt_format": "chat"}, "prompt_format"), ({"open_video": "yes"}, "open_video")):
        with pytest.raises(ValueError, match=key):
            model.generate_video(PROMPT, **bad)


def test_without_generation_json_the_library_defaults_apply(divot_model_dir, tmp_path, calls, caplog):
    root = tmp_path / "model"
    shutil.copytree(divot_model_dir, root)
    (root / GENERATION_FILE).unlink()  # save_pretrained wrote one
    with caplog.at_level(logging.INFO, logger="divot.chat.generation_defaults"):
        model = Divot.from_pretrained(root)
        Divot.from_pretrained(root)
    said = [r for r in caplog.records if f"has no {GENERATION_FILE}" in r.getMessage()]
    assert len(said) == 1 and said[0].levelno == logging.INFO  # once per directory
    assert model.generation_defaults == LIBRARY_DEFAULTS
    model.generate_video(PROMPT)
    assert _rendered_with(calls) == {"sampler": "dpmsolver++", "num_steps": 20, "guidance_scale": 7.5,
                                     "guidance_rescale": 0.7, "eta": 1.0}
    assert calls["llm"][-1][1]["force_video"] is True


def test_save_pretrained_writes_the_generation_json(loaded, tmp_path):
    custom = GenerationDefaults(sampler="unipc", num_steps=4, prompt_format="pretrain")
    root = _with(loaded, custom).save_pretrained(tmp_path / "model")
    assert GenerationDefaults.load(root / GENERATION_FILE) == custom
    assert Divot.from_pretrained(root).generation_defaults == custom


# -- prompt formats ----------------------------------------------------------------------------------------------------
def test_the_pretrain_format_is_bos_and_the_caption(loaded, calls):
    model = _with(loaded, LIBRARY_DEFAULTS)
    text_tokenizer = model.llm.tokenizer
    model.generate_video(PROMPT, prompt_format="pretrain", num_steps=1)
    ids = calls["llm"][-1][0].input_ids.tolist()
    assert ids == [model.builder.ids.bos, *text_tokenizer(PROMPT, add_special_tokens=False).input_ids]
    assert "[INST]" not in text_tokenizer.decode(ids) and "Generate" not in text_tokenizer.decode(ids)
    model.generate_video(PROMPT, num_steps=1)  # the model's default: the instruction format
    instruct = text_tokenizer.decode(calls["llm"][-1][0].input_ids.tolist())
    assert "[INST]" in instruct and "Generate a video of" in instruct
    # a model whose generation.json says pretrain uses it without being asked
    _with(loaded, GenerationDefaults(prompt_format="pretrain")).generate_video(PROMPT, num_steps=1)
    assert calls["llm"][-1][0].input_ids.tolist() == ids


def test_open_video_sample_lets_the_model_open_the_video(loaded, calls, caplog):
    model = _with(loaded, LIBRARY_DEFAULTS)
    with caplog.at_level(logging.INFO, logger="divot.chat.rendering"):
        video = model.generate_video(PROMPT, open_video="sample", num_steps=1, seed=3)
    assert calls["llm"][-1][1]["force_video"] is False
    assert video.settings["open_video"] == "sample"
    assert any("text before the video" in r.getMessage() for r in caplog.records)
    again = model.generate_video(PROMPT, open_video="sample", num_steps=1, seed=3)
    assert again.settings["text"] == video.settings["text"]  # the seed fixes the text too
    model.generate_video(PROMPT, num_steps=1)
    assert calls["llm"][-1][1]["force_video"] is True  # the library default forces <vid>


# -- where converters and builds put the file ----------------------------------------------------------------------------
def test_convert_detokenizer_puts_generation_json_at_the_model_root(tmp_path):
    assert generation_defaults_path(tmp_path / "divot" / "detokenizer") == tmp_path / "divot" / GENERATION_FILE
    assert generation_defaults_path(tmp_path / "divot-detokenizer") == tmp_path / "divot-detokenizer" / GENERATION_FILE


def test_the_demo_passes_every_setting_it_reports_explicitly(tmp_path):
    import argparse

    from divot.commands import demo
    from divot.eval.shapes_demo import generation_scores, story_scores

    parser = argparse.ArgumentParser()
    demo.add_arguments(parser)
    args = parser.parse_args([])
    assert (args.steps, args.guidance) == (SHAPES_DEMO.num_steps, SHAPES_DEMO.guidance_scale)

    class Stop(Exception):
        pass

    class Recorder:
        def generate_video(self, prompt, **kwargs):
            self.kwargs = kwargs
            raise Stop

        def tell_story(self, instruction, num_segments, **kwargs):
            self.generate_video(instruction, **kwargs)

    model = Recorder()
    with pytest.raises(Stop):
        generation_scores(model, [{"prompt": PROMPT}], tmp_path, progress=False)
    assert {k: model.kwargs[k] for k in SHAPES_DEMO.to_dict()} == SHAPES_DEMO.to_dict()
    with pytest.raises(Stop):
        story_scores(model, ["Generate a story."], tmp_path, progress=False)
    assert {k: model.kwargs[k] for k in RENDER_KEYS} == SHAPES_DEMO.render_kwargs()
