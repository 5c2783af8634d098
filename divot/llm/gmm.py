"""The GMM head: LLM hidden states -> a mixture of k diagonal Gaussians over a d-dim clip token.

Parameter layout per token (``out_dim = 2*k*d + k``): the first k*d values are the means (k, d), the next k*d
the variances (softplus, clamped at >= ``var_min``, times ``var_scale``), the last k the mixture logits. All
maths here runs in float32 whatever the LLM's dtype.

Prediction modes (``GMM_MODES``):
  ``sample``  pick a component from the logits, then draw from its Gaussian (variances x ``var_scale``);
  ``mean``    the mixture mean: softmax(logits)-weighted component means (the reference's ``mean_prediction``);
  ``top``     the mean of the most likely component (argmax of the logits).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

GMM_MODES = ("sample", "mean", "top")


@dataclass
class GMMParams:
    means: torch.Tensor  # (..., k, d) float32
    variances: torch.Tensor  # (..., k, d) float32, already clamped and scaled
    logits: torch.Tensor  # (..., k) float32


def split_gmm_params(params: torch.Tensor, num_components: int, token_dim: int, var_min: float = 1e-5,
                     var_scale: float = 1.0) -> GMMParams:
    """Split raw head outputs (..., 2*k*d + k) into means, variances and logits (float32)."""
    k, d = num_components, token_dim
    if params.shape[-1] != 2 * k * d + k:
        raise ValueError(f"GMM parameters must have 2*k*d+k = {2 * k * d + k} values per token (k={k}, d={d}), "
                         f"got {params.shape[-1]}")
    params = params.float()
    lead = params.shape[:-1]
    means = params[..., : k * d].reshape(*lead, k, d)  # (..., k, d)
    raw_var = params[..., k * d : 2 * k * d].reshape(*lead, k, d)  # (..., k, d)
    variances = F.softplus(raw_var).clamp_min(var_min) * var_scale
    logits = params[..., 2 * k * d :]  # (..., k)
    return GMMParams(means, variances, logits)


def gmm_log_prob(gmm: GMMParams, targets: torch.Tensor) -> torch.Tensor:
    """Log-density of targets (..., d) under the mixture: (...,), float32, summed over d."""
    x = targets.float().unsqueeze(-2)  # (..., 1, d)
    comp = -0.5 * (((x - gmm.means) ** 2) / gmm.variances + gmm.variances.log() + math.log(2 * math.pi))
    comp = comp.sum(-1)  # (..., k)
    return torch.logsumexp(comp + gmm.logits.log_softmax(-1), dim=-1)


def gmm_nll(params: torch.Tensor, targets: torch.Tensor, num_components: int, var_min: float = 1e-5) -> torch.Tensor:
    """Mixture negative log-likelihood of targets (..., d) given params (..., 2kd+k), averaged over tokens
    and divided by d: a float32 scalar (the training loss)."""
    d = targets.shape[-1]
    if params.shape[:-1] != targets.shape[:-1]:
        raise ValueError(f"params {tuple(params.shape)} and targets {tuple(targets.shape)} disagree on tokens")
    gmm = split_gmm_params(params, num_components, d, var_min)
    return -gmm_log_prob(gmm, targets).mean() / d


def gmm_predict(gmm: GMMParams, mode: str = "sample", generator: torch.Generator | None = None) -> torch.Tensor:
    """A token (..., d) from the mixture; ``mode`` is one of ``GMM_MODES`` (see the module docstring)."""
    if mode == "mean":
        weights = gmm.logits.softmax(-1).unsqueeze(-1)  # (..., k, 1)
        return (weights * gmm.means).sum(-2)
    if mode == "top":
        index = gmm.logits.argmax(-1)  # (...,)
        return _take_component(gmm.means, index)
    if mode == "sample":
        lead, k = gmm.logits.shape[:-1], gmm.logits.shape[-1]
        probs = gmm.logits.softmax(-1).reshape(-1, k)  # (n, k)
        index = torch.multinomial(probs, 1, generator=generator).reshape(lead)  # (...,)
        mean = _take_component(gmm.means, index)
        std = _take_component(gmm.variances, index).sqrt()
        noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        return mean + std * noise
    raise ValueError(f"unknown GMM mode {mode!r}; expected one of {GMM_MODES}")


def _take_component(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """values (..., k, d), index (...,) -> (..., d)."""
    gather = index[..., None, None].expand(*index.shape, 1, values.shape[-1])  # (..., 1, d)
    return values.gather(-2, gather).squeeze(-2)


class GMMHead(nn.Module):
    """Output projection (Linear hidden->out_dim, GELU, Linear out_dim->out_dim) + the mixture maths.

    The released ``output_resampler.proj.{0,2}`` weights load into ``proj.{0,2}``.
    """

    def __init__(self, hidden_size: int, token_dim: int, num_components: int, var_min: float = 1e-5):
        super().__init__()
        self.token_dim, self.num_components, self.var_min = token_dim, num_components, var_min
        out_dim = 2 * num_components * token_dim + num_components
        self.proj = nn.Sequential(nn.Linear(hidden_size, out_dim), nn.GELU(), nn.Linear(out_dim, out_dim))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """hidden (..., hidden_size) -> raw parameters (..., 2kd+k) in the module's dtype, on its device.

        The input is cast to the head's own dtype and device: a bf16 / quantized LLM's last hidden states meet
        a head kept in another dtype, and with a ``device_map`` they may come from another device."""
        weight = self.proj[0].weight
        return self.proj(hidden.to(device=weight.device, dtype=weight.dtype))

    def nll(self, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """GMM NLL / d of targets (..., d) given hidden states (..., hidden_size); float32 scalar."""
        params = self(hidden)
        return gmm_nll(params, targets.to(params.device), self.num_components, self.var_min)

    def predict(self, hidden: torch.Tensor, mode: str = "sample", var_scale: float = 0.1,
                generator: torch.Generator | None = None) -> torch.Tensor:
        """Tokens (..., d) float32 from hidden states (..., hidden_size)."""
        params = self(hidden)
        if generator is not None:
            params = params.to(generator.device)  # draw where the generator lives (the head may be elsewhere)
        gmm = split_gmm_params(params, self.num_components, self.token_dim, self.var_min, var_scale)
        return gmm_predict(gmm, mode, generator)
