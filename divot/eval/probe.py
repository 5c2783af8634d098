"""Linear probe of tokens against labels (scikit-learn logistic regression).

A training-time evaluation of the tokenizer: how much of an attribute (colour, shape, motion on the shapes
world) a linear classifier can read from the flattened tokens of a clip.
"""

from __future__ import annotations

import numpy as np
import torch


def linear_probe(train_x: torch.Tensor | np.ndarray, train_y: list, test_x: torch.Tensor | np.ndarray,
                 test_y: list, max_iter: int = 2000, seed: int = 0) -> dict:
    """Fit on (train_x (n, ...), train_y) and score on the test split.

    Returns ``{"accuracy", "chance", "num_train", "num_test", "num_classes"}``; chance is the accuracy of
    always predicting the most frequent training label.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    xtr = _flat(train_x)
    xte = _flat(test_x)
    if len(xtr) != len(train_y) or len(xte) != len(test_y):
        raise ValueError(f"features and labels differ in length: {len(xtr)} vs {len(train_y)}, "
                         f"{len(xte)} vs {len(test_y)}")
    classes, counts = np.unique(np.asarray(train_y), return_counts=True)
    if len(classes) < 2:
        raise ValueError(f"a probe needs at least 2 classes in the training labels, got {list(classes)}")
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=max_iter, random_state=seed))
    clf.fit(xtr, np.asarray(train_y))
    accuracy = float((clf.predict(xte) == np.asarray(test_y)).mean()) if len(xte) else float("nan")
    majority = classes[counts.argmax()]
    chance = float((np.asarray(test_y) == majority).mean()) if len(xte) else float("nan")
    return {"accuracy": accuracy, "chance": chance, "num_train": len(xtr), "num_test": len(xte),
            "num_classes": int(len(classes))}


def _flat(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().float().cpu().numpy()
    x = np.asarray(x, dtype=np.float32)
    return x.reshape(len(x), -1)
