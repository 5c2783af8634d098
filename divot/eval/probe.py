"""Linear probe of tokens against labels (scikit-learn logistic regression).

A training-time evaluation of the tokenizer: how much of an attribute (colour, shape, motion on the shapes
world) a linear classifier can read from the flattened tokens of a clip.
"""

from __future__ import annotations

import numpy as np
import torch


def fit_probe(train_x: torch.Tensor | np.ndarray, train_y: list, max_iter: int = 2000, seed: int = 0):
    """A standardised logistic-regression classifier fitted on (train_x (n, ...), train_y); ``predict`` takes
    features flattened like ``flat_features``."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    xtr = flat_features(train_x)
    if len(xtr) != len(train_y):
        raise ValueError(f"features and labels differ in length: {len(xtr)} vs {len(train_y)}")
    if len(np.unique(np.asarray(train_y))) < 2:
        raise ValueError(f"a probe needs at least 2 classes in the training labels, got {sorted(set(train_y))}")
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=max_iter, random_state=seed))
    return clf.fit(xtr, np.asarray(train_y))


def linear_probe(train_x: torch.Tensor | np.ndarray, train_y: list, test_x: torch.Tensor | np.ndarray,
                 test_y: list, max_iter: int = 2000, seed: int = 0, with_predictions: bool = False,
                 clf=None) -> dict:
    """Fit on (train_x (n, ...), train_y) and score on the test split.

    Returns ``{"accuracy", "chance", "num_train", "num_test", "num_classes"}`` (and ``"predictions"``, one label
    per test item, with ``with_predictions``); chance is the accuracy of always predicting the most frequent
    training label. ``clf``: the ``fit_probe`` of (train_x, train_y) when the caller already has it (scoring
    one fit on several test splits).
    """
    xte = flat_features(test_x)
    if len(xte) != len(test_y):
        raise ValueError(f"features and labels differ in length: {len(xte)} vs {len(test_y)}")
    clf = fit_probe(train_x, train_y, max_iter, seed) if clf is None else clf
    classes, counts = np.unique(np.asarray(train_y), return_counts=True)
    pred = clf.predict(xte) if len(xte) else np.asarray([])
    accuracy = float((pred == np.asarray(test_y)).mean()) if len(xte) else float("nan")
    majority = classes[counts.argmax()]
    chance = float((np.asarray(test_y) == majority).mean()) if len(xte) else float("nan")
    out = {"accuracy": accuracy, "chance": chance, "num_train": len(train_y), "num_test": len(xte),
           "num_classes": int(len(classes))}
    if with_predictions:
        out["predictions"] = [str(v) for v in pred]
    return out


def flat_features(x) -> np.ndarray:
    """Features (n, ...) as a float32 array (n, features)."""
    if isinstance(x, torch.Tensor):
        x = x.detach().float().cpu().numpy()
    x = np.asarray(x, dtype=np.float32)
    return x.reshape(len(x), -1)
