"""Shared golden fixtures: the reference de-tokenizer converted once per session (sizes from the JSON)."""

import json

import pytest
from safetensors.torch import load_file

from divot.convert.detokenizer import convert_detokenizer
from divot.diffusion.config import condition_config_from_reference, unet_config_from_reference


@pytest.fixture(scope="session")
def detok_meta(golden_dir):
    return json.loads((golden_dir / "detokenizer_config.json").read_text())


@pytest.fixture(scope="session")
def detok_io(golden_dir):
    return load_file(str(golden_dir / "detokenizer_io.safetensors"))


@pytest.fixture(scope="session")
def sampler_io(golden_dir):
    return load_file(str(golden_dir / "sampler_io.safetensors"))


@pytest.fixture(scope="session")
def golden_detokenizer(golden_dir, detok_meta):
    return convert_detokenizer(golden_dir / "detokenizer_official.safetensors",
                               unet_config_from_reference(detok_meta["unet"]),
                               condition_config_from_reference(detok_meta["image_proj_model"]))
