import numpy as np
import pytest
import torch

from divot.eval.probe import fit_probe, linear_probe


def _data(n, seed):
    """Features (n, 2, 3) whose first feature says the label; the rest is noise."""
    g = torch.Generator().manual_seed(seed)
    labels = [("a", "b", "c")[i % 3] for i in range(n)]
    x = torch.randn(n, 2, 3, generator=g) * 0.1
    x[:, 0, 0] = torch.tensor([{"a": -1.0, "b": 0.0, "c": 1.0}[lab] for lab in labels])
    return x, labels


def test_probe_reads_a_linear_label_and_reports_chance():
    x, y = _data(90, 0)
    tx, ty = _data(30, 1)
    r = linear_probe(x, y, tx, ty, with_predictions=True)
    assert r["accuracy"] == 1.0 and r["predictions"] == ty
    assert r["chance"] == pytest.approx(1 / 3) and r["num_train"] == 90 and r["num_test"] == 30
    assert r["num_classes"] == 3


def test_a_probe_fitted_once_scores_several_splits_the_same():
    x, y = _data(90, 0)
    tx, ty = _data(30, 1)
    shuffled = list(np.random.default_rng(0).permutation(ty))  # wrong labels: accuracy near chance
    clf = fit_probe(x, y)
    assert linear_probe(x, y, tx, ty, clf=clf) == linear_probe(x, y, tx, ty)
    assert linear_probe(x, y, tx, shuffled, clf=clf)["accuracy"] < 0.7


def test_probe_rejects_bad_input():
    x, y = _data(9, 0)
    with pytest.raises(ValueError, match="differ in length"):
        linear_probe(x, y[:-1], x, y)
    with pytest.raises(ValueError, match="differ in length"):
        linear_probe(x, y, x, y[:-1])
    with pytest.raises(ValueError, match="at least 2 classes"):
        fit_probe(x, ["a"] * 9)
