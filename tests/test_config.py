from dataclasses import dataclass, field

import pytest

from divot.config import ConfigError, apply_overrides, config_from_dict, load_yaml, save_yaml


@dataclass
class Inner:
    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.98)


@dataclass
class Outer:
    name: str = "run"
    steps: int = 10
    inner: Inner = field(default_factory=Inner)


def test_yaml_round_trip_with_overrides(tmp_path):
    cfg = Outer(name="x", inner=Inner(lr=3e-4))
    save_yaml(cfg, tmp_path / "c.yaml")
    loaded = load_yaml(Outer, tmp_path / "c.yaml", ["inner.lr=1e-3", "steps=5", "inner.betas=[0.8, 0.9]"])
    assert loaded == Outer(name="x", steps=5, inner=Inner(lr=1e-3, betas=(0.8, 0.9)))


def test_unknown_keys_are_named(tmp_path):
    (tmp_path / "c.yaml").write_text("name: a\ninner:\n  lrr: 1\n")
    with pytest.raises(ConfigError, match="inner.lrr"):
        load_yaml(Outer, tmp_path / "c.yaml")
    with pytest.raises(ConfigError, match="inner.nope"):
        apply_overrides(Outer(), ["inner.nope=1"])
    with pytest.raises(ConfigError, match="key.sub=value"):
        apply_overrides(Outer(), ["steps"])


def test_wrong_types_are_rejected():
    with pytest.raises(ConfigError, match="steps: expected int"):
        config_from_dict(Outer, {"steps": "many"})


def test_missing_config_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="absent.yaml"):
        load_yaml(Outer, tmp_path / "absent.yaml")
