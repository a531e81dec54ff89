"""Feature selection for the meta-labeling classifier: mutual information with the label.

Rules:

- The score of a column is the mutual information (nats) between the label and the column cut
  into ``bins`` quantile bins of the rows given: a plug-in estimate from the contingency table,
  deterministic (no random tie-breaking, unlike scikit-learn's k-nearest-neighbour estimator)
  and O(n log n) per column, cheap enough for every refit of every walk-forward trial.
- It sees only the rows it is given. ``AdaptiveThreshold.fit`` calls it on its training rows,
  so inside a walk-forward the selection of each refit is fitted on that refit's training
  events alone (``tests/thresholds/test_selection.py`` poisons the test rows and shows the
  selection unchanged).
- A constant column scores 0; so does every column when the label has one class.
"""

from __future__ import annotations

import numpy as np

from tradeloop.errors import ConfigError


def mutual_information(X: np.ndarray, y: np.ndarray, *, bins: int = 10) -> np.ndarray:
    """Mutual information (nats, >= 0) of each column of ``X`` with the binary label ``y``.

    Parameters
    ----------
    X:
        Rows by features, finite.
    y:
        One 0/1 label per row.
    bins:
        Quantile bins each column is cut into (at least 2).

    Raises
    ------
    ConfigError
        Shapes that do not match, or fewer than 2 bins.
    """
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y).astype(np.int64)
    if X.ndim != 2 or len(X) != len(y):
        raise ConfigError(f"X {X.shape} and y {y.shape} must have one row per label")
    if bins < 2:
        raise ConfigError(f"bins={bins}: cut each column into at least 2 quantile bins")
    scores = np.zeros(X.shape[1])
    if len(y) == 0 or np.unique(y).size < 2:
        return scores
    p_y = np.bincount(y, minlength=2) / len(y)
    for j in range(X.shape[1]):
        edges = np.unique(np.quantile(X[:, j], np.linspace(0.0, 1.0, bins + 1)[1:-1]))
        cell = np.searchsorted(edges, X[:, j], side="right")
        joint = np.zeros((edges.size + 1, 2))
        np.add.at(joint, (cell, y), 1.0)
        joint /= len(y)
        p_x = joint.sum(axis=1, keepdims=True)
        nz = joint > 0
        scores[j] = max(0.0, float(np.sum(joint[nz] * np.log(joint[nz] / (p_x @ p_y[None, :])[nz]))))
    return scores
