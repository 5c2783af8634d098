"""Bootstrap confidence intervals for per-item scores (accuracy, judge scores).

Percentile bootstrap: resample the items with replacement ``num_resamples`` times from a fixed-seed generator
and take the (1 - level) / 2 and (1 + level) / 2 quantiles of the resampled means. The same scores and seed
give the same interval.
"""

from __future__ import annotations

import numpy as np

DEFAULT_RESAMPLES = 1000
DEFAULT_SEED = 0


def bootstrap_ci(scores, level: float = 0.95, num_resamples: int = DEFAULT_RESAMPLES,
                 seed: int = DEFAULT_SEED) -> dict:
    """Mean of ``scores`` (n,) with its percentile-bootstrap interval.

    Returns {"value", "ci_low", "ci_high", "level", "n", "num_resamples", "seed"}; value and bounds are None
    for an empty list.
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if num_resamples < 1:
        raise ValueError(f"num_resamples must be >= 1, got {num_resamples}")
    x = np.asarray(list(scores), dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"expected one score per item (n,), got shape {x.shape}")
    out = {"level": level, "n": int(x.size), "num_resamples": num_resamples, "seed": seed}
    if x.size == 0:
        return {"value": None, "ci_low": None, "ci_high": None, **out}
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(num_resamples, x.size))].mean(axis=1)  # (num_resamples,)
    low, high = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return {"value": float(x.mean()), "ci_low": float(low), "ci_high": float(high), **out}
