"""Reference DDIM (bit-exact mode) and diffusers sampling, on the golden U-Net and on an exact 'oracle' model."""

import functools
import warnings

import numpy as np
import pytest
import torch

from divot.diffusion.reference_sampler import reference_ddim_sample, reference_ddim_tables
from divot.diffusion.sampling import sample_with_scheduler
from divot.diffusion.schedule import make_alphas_cumprod, make_ddim_scheduler, make_scheduler
from tests.diffusion.conftest import REFERENCE_GUIDANCE, REFERENCE_GUIDANCE_RESCALE


@pytest.mark.parametrize("num_steps", [10, 50, 7])
@pytest.mark.parametrize("eta", [1.0, 0.3])
def test_tables_follow_the_reference_expression(num_steps, eta):
    # The reference's own code, verbatim: an fp16 torch tensor mixed with numpy float64 arrays.
    alphacums = make_alphas_cumprod().float().half()
    ddim_timesteps = np.asarray(list(range(0, 1000, 1000 // num_steps))) + 1
    alphas = alphacums[ddim_timesteps]
    alphas_prev = np.asarray([alphacums[0]] + alphacums[ddim_timesteps[:-1]].tolist())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        sigmas = eta * np.sqrt((1 - alphas_prev) / (1 - alphas) * (1 - alphas / alphas_prev))
    tables = reference_ddim_tables(num_steps, eta)
    assert tables.timesteps.tolist() == ddim_timesteps.tolist()
    assert torch.equal(tables.alphas_prev, torch.as_tensor(alphas_prev))
    assert torch.equal(tables.sigmas, torch.as_tensor(np.asarray(sigmas)))


def _reference_run(golden_detokenizer, detok_io, sampler_io, schedule, case) -> torch.Tensor:
    """The reference DDIM on the golden U-Net with the case's steps, eta, x_T and recorded step noise."""
    if case.step_noise is not None:
        assert case.step_noise.shape == (case.num_steps, *case.x_T.shape)
    return reference_ddim_sample(functools.partial(golden_detokenizer.unet, fs=detok_io["fs"]),
                                 sampler_io["cond_context"], sampler_io["uncond_context"], x_T=case.x_T,
                                 step_noise=case.step_noise, num_steps=case.num_steps, eta=case.eta,
                                 guidance=REFERENCE_GUIDANCE, guidance_rescale=REFERENCE_GUIDANCE_RESCALE,
                                 schedule=schedule, progress=False)


@pytest.mark.golden
def test_reference_ddim_matches_the_shortest_deterministic_run(golden_detokenizer, detok_io, sampler_io,
                                                               golden_schedule, deterministic_case):
    out = _reference_run(golden_detokenizer, detok_io, sampler_io, golden_schedule, deterministic_case)
    assert out.shape == deterministic_case.final_latent.shape
    assert (out - deterministic_case.final_latent).abs().max() <= 1e-5


@pytest.mark.golden
@pytest.mark.slow
def test_reference_ddim_matches_the_other_golden_runs(golden_detokenizer, detok_io, sampler_io,
                                                     golden_schedule, sampler_cases, deterministic_case):
    """The runs in sampler_io besides the fast one (in the shipped set: 50 steps, eta 1, recorded noise)."""
    for case in sampler_cases:
        if case is deterministic_case:
            continue
        out = _reference_run(golden_detokenizer, detok_io, sampler_io, golden_schedule, case)
        assert (out - case.final_latent).abs().max() <= 1e-5, case.name


@pytest.mark.golden
def test_diffusers_ddim_is_close_to_the_reference(golden_detokenizer, detok_io, sampler_io, golden_schedule,
                                                  deterministic_case):
    expected = deterministic_case.final_latent
    out = sample_with_scheduler(functools.partial(golden_detokenizer.unet, fs=detok_io["fs"]),
                                make_ddim_scheduler(golden_schedule), deterministic_case.x_T,
                                sampler_io["cond_context"], sampler_io["uncond_context"],
                                guidance=REFERENCE_GUIDANCE, rescale=REFERENCE_GUIDANCE_RESCALE,
                                num_steps=deterministic_case.num_steps, generator=None, progress=False)
    relative = (out - expected).norm() / expected.norm()
    assert relative < 5e-3
    assert relative > 0  # the float32 schedule without fp16 tables is close, not identical


SHAPE = (2, 4, 3, 4, 4)


@pytest.fixture
def oracle():
    """The exact v-predictor for data concentrated on one point x0: v = (sqrt(abar) x - x0) / sqrt(1 - abar)."""
    abar = make_alphas_cumprod().float()
    x0 = torch.randn(SHAPE, generator=torch.Generator().manual_seed(0))

    def denoise(x, t, context):
        a = abar[t.round().long()].view(-1, 1, 1, 1, 1)
        return (a.sqrt() * x - x0) / (1 - a).sqrt()

    return denoise, x0, abar


@pytest.mark.parametrize("name", ["dpmsolver++", "euler", "unipc"])
def test_diffusers_solvers_recover_the_data_point(oracle, name):
    denoise, x0, _ = oracle
    x_T = torch.randn(SHAPE, generator=torch.Generator().manual_seed(1))
    out = sample_with_scheduler(denoise, make_scheduler(name), x_T, torch.zeros(2, 5, 8), num_steps=12,
                                progress=False)
    assert (out - x0).abs().max() < 1e-4


def test_ddim_ends_at_the_first_training_step(oracle):
    denoise, x0, abar = oracle
    x_T = torch.randn(SHAPE, generator=torch.Generator().manual_seed(1))
    cond = torch.zeros(2, 5, 8)
    out = sample_with_scheduler(denoise, make_ddim_scheduler(), x_T, cond, num_steps=20, progress=False)
    # Deterministic DDIM keeps the predicted noise; the last step lands on abar[0], not on the clean data.
    a_first, a_last = abar[951].double(), abar[0].double()
    eps = (x_T.double() - a_first.sqrt() * x0.double()) / (1 - a_first).sqrt()
    assert torch.allclose(out.double(), a_last.sqrt() * x0.double() + (1 - a_last).sqrt() * eps, atol=1e-5)
    reference = reference_ddim_sample(denoise, cond, x_T=x_T, num_steps=20, eta=0.0, progress=False)
    assert (reference - out).abs().max() < 0.05  # fp16 tables: close, not equal


def test_reference_draws_one_noise_per_step_even_with_eta0(oracle):
    denoise, _, _ = oracle
    cond = torch.zeros(2, 5, 8)
    generator = torch.Generator().manual_seed(5)
    reference_ddim_sample(denoise, cond, shape=SHAPE, num_steps=10, eta=0.0, generator=generator, progress=False)
    replay = torch.Generator().manual_seed(5)
    for _ in range(1 + 10):
        torch.randn(SHAPE, generator=replay)
    assert torch.equal(torch.randn(3, generator=generator), torch.randn(3, generator=replay))


def test_injected_noise_equals_drawn_noise(oracle):
    denoise, _, _ = oracle
    cond = torch.zeros(2, 5, 8)
    drawn = reference_ddim_sample(denoise, cond, shape=SHAPE, num_steps=5, eta=1.0,
                                  generator=torch.Generator().manual_seed(3), progress=False)
    g = torch.Generator().manual_seed(3)
    x_T = torch.randn(SHAPE, generator=g)
    noises = [torch.randn(SHAPE, generator=g) for _ in range(5)]
    injected = reference_ddim_sample(denoise, cond, x_T=x_T, step_noise=noises, num_steps=5, eta=1.0,
                                     progress=False)
    assert torch.equal(drawn, injected)
    with pytest.raises(ValueError, match="5 tensors"):
        reference_ddim_sample(denoise, cond, x_T=x_T, step_noise=noises[:4], num_steps=5, progress=False)
    with pytest.raises(ValueError, match="exactly one of x_T"):
        reference_ddim_sample(denoise, cond, num_steps=5, progress=False)
