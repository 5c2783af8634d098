import math

import pytest
import torch
from torch import distributions as D

from divot.llm.gmm import GMMHead, gmm_nll, gmm_predict, split_gmm_params

K, DIM = 3, 4


def make_params(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 2 * K * DIM + K, generator=torch.Generator().manual_seed(seed))


def test_split_layout_and_variance_floor():
    params = make_params(5)
    params[:, K * DIM : 2 * K * DIM] = -50.0  # softplus -> ~0: clamped at var_min
    gmm = split_gmm_params(params, K, DIM, var_min=1e-3, var_scale=0.5)
    assert gmm.means.shape == (5, K, DIM) and gmm.variances.shape == (5, K, DIM) and gmm.logits.shape == (5, K)
    assert torch.equal(gmm.means, params[:, : K * DIM].reshape(5, K, DIM))
    assert torch.allclose(gmm.variances, torch.full_like(gmm.variances, 0.5e-3))
    with pytest.raises(ValueError, match=f"{2 * K * DIM + K} values"):
        split_gmm_params(params[:, :-1], K, DIM)


def test_nll_equals_torch_mixture():
    params, targets = make_params(7), torch.randn(7, DIM)
    gmm = split_gmm_params(params, K, DIM)
    mix = D.MixtureSameFamily(D.Categorical(logits=gmm.logits),
                              D.Independent(D.Normal(gmm.means, gmm.variances.sqrt()), 1))
    want = -mix.log_prob(targets).mean() / DIM
    assert torch.allclose(gmm_nll(params, targets, K), want, atol=1e-5)


def test_nll_is_float32_for_bfloat16_inputs():
    params, targets = make_params(4), torch.randn(4, DIM)
    out = gmm_nll(params.bfloat16(), targets.bfloat16(), K)
    assert out.dtype == torch.float32 and math.isfinite(out.item())


def test_modes():
    params = make_params(2)
    params[:, 2 * K * DIM :] = torch.tensor([0.0, 30.0, 0.0])  # component 1 dominates
    gmm = split_gmm_params(params, K, DIM, var_scale=1e-6)
    top = gmm_predict(gmm, "top")
    assert torch.equal(top, gmm.means[:, 1])
    mean = gmm_predict(gmm, "mean")
    assert torch.allclose(mean, (gmm.logits.softmax(-1)[..., None] * gmm.means).sum(-2))
    sample = gmm_predict(gmm, "sample", torch.Generator().manual_seed(0))
    assert sample.shape == (2, DIM) and torch.allclose(sample, top, atol=1e-2)
    with pytest.raises(ValueError, match="unknown GMM mode"):
        gmm_predict(gmm, "median")


def test_sampling_is_reproducible_and_scaled():
    params = make_params(1).repeat(4000, 1)
    gmm = split_gmm_params(params, K, DIM, var_scale=0.1)
    a = gmm_predict(gmm, "sample", torch.Generator().manual_seed(3))
    b = gmm_predict(gmm, "sample", torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    # The sample mean approaches the mixture mean.
    assert torch.allclose(a.mean(0), gmm_predict(gmm, "mean")[0], atol=0.15)


def test_head_shapes():
    head = GMMHead(hidden_size=8, token_dim=DIM, num_components=K)
    hidden = torch.randn(2, 5, 8)
    assert head(hidden).shape == (2, 5, 2 * K * DIM + K)
    assert head.predict(hidden, "mean").shape == (2, 5, DIM)
    assert head.nll(hidden, torch.randn(2, 5, DIM)).ndim == 0
