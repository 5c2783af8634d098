"""Shared golden fixtures: the reference de-tokenizer converted once per test run (sizes from the JSON)."""

import json
import re
from dataclasses import dataclass

import pytest
import torch
from safetensors.torch import load_file

from divot.convert.detokenizer import convert_detokenizer
from divot.diffusion.config import ScheduleConfig, condition_config_from_reference, unet_config_from_reference

# The reference sampler's guidance settings (golden README, "Reference DDIM sampling"): the only golden
# settings that no JSON or tensor name records.
REFERENCE_GUIDANCE, REFERENCE_GUIDANCE_RESCALE = 7.5, 0.7


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


def schedule_from_reference(block: dict) -> ScheduleConfig:
    """A ``ScheduleConfig`` from the golden ``schedule`` block (the reference's LDM schedule arguments).

    Fails on settings this toolkit cannot reproduce or does not know, rather than ignoring one that shapes
    the golden tensors.
    """
    known = {"beta_schedule", "timesteps", "linear_start", "linear_end", "rescale_zero_terminal_snr"}
    unknown = sorted(set(block) - known)
    if unknown:
        pytest.fail(f"golden schedule block has setting(s) the tests do not read: {unknown}", pytrace=False)
    if block.get("beta_schedule", "linear") != "linear":
        pytest.fail(f"golden beta_schedule {block['beta_schedule']!r}: only 'linear' (in sqrt space) is "
                    "implemented", pytrace=False)
    defaults = ScheduleConfig()
    return ScheduleConfig(num_train_timesteps=block.get("timesteps", defaults.num_train_timesteps),
                          beta_start=block.get("linear_start", defaults.beta_start),
                          beta_end=block.get("linear_end", defaults.beta_end),
                          rescale_zero_terminal_snr=block.get("rescale_zero_terminal_snr",
                                                              defaults.rescale_zero_terminal_snr))


@pytest.fixture(scope="session")
def golden_schedule(detok_meta) -> ScheduleConfig:
    if "schedule" not in detok_meta:
        pytest.fail("detokenizer_config.json has no 'schedule' block", pytrace=False)
    return schedule_from_reference(detok_meta["schedule"])


@dataclass
class SamplerCase:
    """One reference DDIM run of ``sampler_io``: ``ddim{steps}_eta{eta}.*``."""

    name: str
    num_steps: int
    eta: float
    x_T: torch.Tensor  # (b, c, t, h, w)
    final_latent: torch.Tensor  # (b, c, t, h, w)
    step_noise: torch.Tensor | None  # (num_steps, b, c, t, h, w): the noise drawn at each step, if recorded


@pytest.fixture(scope="session")
def sampler_cases(sampler_io) -> list[SamplerCase]:
    """Every DDIM run in sampler_io, fewest steps first; steps and eta are read from the key names."""
    cases = []
    for key in sampler_io:
        match = re.fullmatch(r"(ddim(\d+)_eta([0-9.]+?))\.x_T", key)
        if match is None:
            continue
        name = match.group(1)
        cases.append(SamplerCase(name=name, num_steps=int(match.group(2)), eta=float(match.group(3)),
                                 x_T=sampler_io[key], final_latent=sampler_io[f"{name}.final_latent"],
                                 step_noise=sampler_io.get(f"{name}.step_noise")))
    if not cases:
        pytest.fail(f"sampler_io.safetensors holds no ddim<steps>_eta<eta>.x_T case: {sorted(sampler_io)}",
                    pytrace=False)
    return sorted(cases, key=lambda c: c.num_steps)


@pytest.fixture(scope="session")
def deterministic_case(sampler_cases) -> SamplerCase:
    """The shortest eta-0 run: the fast check, and one diffusers' DDIM can follow without injected noise."""
    for case in sampler_cases:
        if case.eta == 0:
            return case
    pytest.fail(f"no eta-0 case among {[c.name for c in sampler_cases]}", pytrace=False)
