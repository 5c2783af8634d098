"""The de-tokenizer is read only when something renders (a 6 GB part at paper size that asking never uses)."""

import shutil

import pytest

from divot.chat import Divot
from divot.diffusion import Detokenizer


@pytest.fixture()
def model_copy(divot_model_dir, tmp_path):
    return shutil.copytree(divot_model_dir, tmp_path / "model")


def test_asking_never_loads_the_detokenizer(model_copy, shapes_video, monkeypatch):
    loads = []
    real = Detokenizer.from_pretrained.__func__
    monkeypatch.setattr(Detokenizer, "from_pretrained",
                        classmethod(lambda cls, *a, **k: loads.append(a) or real(cls, *a, **k)))
    model = Divot.from_pretrained(model_copy)
    model.ask(shapes_video, "What colour is the object?", max_new_tokens=4, seed=0)
    model.caption(shapes_video, max_new_tokens=4, greedy=True)
    assert loads == []
    video = model.generate_video("a red circle", num_steps=1, sampler="ddim")
    assert len(loads) == 1 and len(video) > 0
    model.generate_video("a red circle", num_steps=1, sampler="ddim")
    assert len(loads) == 1  # loaded once


def test_a_damaged_detokenizer_stops_only_rendering(model_copy, shapes_video):
    (model_copy / "detokenizer" / "model.safetensors").write_bytes(b"not a safetensors file")
    model = Divot.from_pretrained(model_copy)
    assert isinstance(model.ask(shapes_video, "What colour is the object?", max_new_tokens=4, seed=0), str)
    with pytest.raises(ValueError, match=r"cannot load the de-tokenizer from .*detokenizer"):
        model.generate_video("a red circle", num_steps=1)


def test_a_detokenizer_of_another_size_is_caught_before_loading(model_copy):
    import json

    config_path = model_copy / "detokenizer" / "config.json"
    config = json.loads(config_path.read_text())
    config["num_tokens"] = config["num_tokens"] + 1
    config_path.write_text(json.dumps(config))
    with pytest.raises(ValueError, match="de-tokenizer expects"):
        Divot.from_pretrained(model_copy)
