import pytest
import torch

from divot.diffusion.config import ScheduleConfig
from divot.diffusion.schedule import (
    classifier_free_guidance,
    make_alphas_cumprod,
    make_betas,
    make_ddim_scheduler,
    make_ddpm_scheduler,
    make_scheduler,
    timestep_embedding,
)


@pytest.mark.golden
def test_schedule_matches_reference(detok_io, golden_schedule):
    """Built from detokenizer_config.json's schedule block (steps, beta range, zero-SNR rescale)."""
    betas, abar = make_betas(golden_schedule), make_alphas_cumprod(golden_schedule)
    assert betas.shape == detok_io["betas_rescaled"].shape == (golden_schedule.num_train_timesteps,)
    assert (betas - detok_io["betas_rescaled"]).abs().max() <= 1e-6
    assert (abar - detok_io["alphas_cumprod"]).abs().max() <= 1e-6


@pytest.mark.golden
def test_timestep_embedding_matches_reference(detok_io):
    # The key names the embedded timesteps (timestep_embedding_t0_1_537_999); the width is the tensor's.
    (key,) = [k for k in detok_io if k.startswith("timestep_embedding_t")]
    timesteps = torch.tensor([int(t) for t in key[len("timestep_embedding_t"):].split("_")])
    expected = detok_io[key]
    assert expected.shape[0] == len(timesteps)
    emb = timestep_embedding(timesteps, expected.shape[1])
    assert emb.dtype == torch.float32
    assert (emb - expected).abs().max() <= 1e-6


def test_timestep_embedding_is_cos_then_sin():
    emb = timestep_embedding(torch.tensor([0]), 8)
    assert torch.equal(emb[0], torch.tensor([1.0] * 4 + [0.0] * 4))
    assert timestep_embedding(torch.tensor([3]), 7).shape == (1, 7)


def test_zero_terminal_snr():
    abar = make_alphas_cumprod()
    assert abar.dtype == torch.float64
    assert abar[-1] == 0
    plain = make_alphas_cumprod(ScheduleConfig(rescale_zero_terminal_snr=False))
    assert abar[0] == pytest.approx(plain[0].item(), rel=1e-12)
    assert plain[-1] > 0
    assert torch.all(abar[1:] < abar[:-1])


def test_ddim_scheduler_uses_the_reference_timesteps():
    scheduler = make_ddim_scheduler()
    scheduler.set_timesteps(50)
    assert scheduler.timesteps.tolist() == list(range(981, 0, -20))
    assert scheduler.final_alpha_cumprod.item() == pytest.approx(make_alphas_cumprod()[0].item(), rel=1e-6)
    assert scheduler.config.prediction_type == "v_prediction"


def test_ddpm_scheduler_noises_with_our_schedule():
    scheduler = make_ddpm_scheduler()
    abar = make_alphas_cumprod().float()
    assert torch.allclose(scheduler.alphas_cumprod, abar, atol=1e-6)
    x0, noise = torch.randn(2, 4, 3, 4, 4), torch.randn(2, 4, 3, 4, 4)
    t = torch.tensor([0, 999])
    v = scheduler.get_velocity(x0, noise, t)
    a = abar[t].view(-1, 1, 1, 1, 1)
    assert torch.allclose(v, a.sqrt() * noise - (1 - a).sqrt() * x0, atol=1e-6)
    assert torch.allclose(scheduler.add_noise(x0, noise, t)[1], noise[1], atol=1e-6)  # pure noise at t=999


def test_scheduler_factory():
    for name in ("ddpm", "ddim", "dpmsolver++", "euler", "unipc"):
        assert make_scheduler(name).config.num_train_timesteps == 1000
    with pytest.raises(ValueError, match="dpmsolver"):
        make_scheduler("plms")


def test_classifier_free_guidance_with_rescale():
    g = torch.Generator().manual_seed(0)
    cond, uncond = torch.randn(2, 3, 4, generator=g), torch.randn(2, 3, 4, generator=g)
    plain = classifier_free_guidance(cond, uncond, 7.5)
    assert torch.allclose(plain, uncond + 7.5 * (cond - uncond))
    full = classifier_free_guidance(cond, uncond, 7.5, rescale=1.0)
    assert torch.allclose(full.std(dim=(1, 2)), cond.std(dim=(1, 2)), rtol=1e-5)
    mixed = classifier_free_guidance(cond, uncond, 7.5, rescale=0.7)
    assert torch.allclose(mixed, 0.7 * full + 0.3 * plain, atol=1e-5)
    assert torch.allclose(classifier_free_guidance(cond, uncond, 1.0), cond, atol=1e-6)
