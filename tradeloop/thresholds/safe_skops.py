"""The classifier file (``classifier.skops``): written and read with an exact type allow-list.

Rules:

- Nothing is constructed before the file's untrusted-type listing
  (``skops.io.get_untrusted_types``, skops' own audit of every node) has been checked.
  Every name it reports must be in ``ALLOWED_TYPES``, compared whole: no prefix matching,
  so no ``builtins.*``, ``operator.*``, ``functools.*`` or ``posix.*`` callable ever gets
  through. A refused file names the refused types.
- ``ALLOWED_TYPES`` is exactly what skops reports for the classifiers this project
  trains: ``AdaptiveThreshold``'s classifiers (``model="logistic"``: ``StandardScaler`` +
  ``LogisticRegression``; ``model="hgb"``: ``HistGradientBoostingClassifier``, whose trees
  are ``TreePredictor`` objects) calibrated by ``CalibratedClassifierCV`` over a
  ``TimeSeriesSplit``, with ``calibration="sigmoid"`` or ``"isotonic"``. The types skops
  trusts by itself (scikit-learn estimators, numpy arrays and dtypes, primitives) are
  never reported and need no entry. tests/thresholds/test_safe_skops.py trains both and
  requires the listing to equal this set, so a scikit-learn upgrade that changes it fails
  the build instead of loosening the check.
- The bytes are read once: the listing and the load see the same bytes, and skops' own
  audit runs again at load with the same allow-list.
- Before any of that, the file's size and the sizes its zip directory declares are bounded
  (``MAX_FILE_BYTES``, ``MAX_UNPACKED_BYTES``, and at most ``MAX_RATIO`` times the file's
  size unpacked): a decompression bomb is refused before it is expanded. Python's zipfile
  never inflates a member past its declared size, so the declared sizes are binding. The
  classifiers tradeloop writes are well under 1 MB (stored, ratio 1).
- What comes out must be a ``CalibratedClassifierCV`` over the expected number of
  features, with classes ``[0, 1]``, every inner linear model's ``coef_`` of shape
  ``(1, n_features)`` and finite, and it must predict: a smoke ``predict_proba`` on rows of
  zeros, ones and minus ones must give finite probabilities in [0, 1] of shape (3, 2). A
  classifier that passes the type check but would raise (or answer NaN) at the first bar is
  refused here, so the live engine goes reduce-only instead of failing every bar. A boosted
  tree's node table is read by compiled code without bounds checks, so before the smoke
  prediction every split node's children must be later nodes of its own tree (inside the
  table, and no cycle: scikit-learn numbers a child after its parent),
  every split feature one of the ``n_features`` and no split categorical (tradeloop trains
  none): a crafted table cannot make prediction read outside its arrays.
- Saving checks the same list first, so a model that could not be loaded is never
  written (a custom ``classifier=`` with other types is refused at save time).
"""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import skops.io as sio
from sklearn.calibration import CalibratedClassifierCV

from tradeloop.errors import ModelError

ALLOWED_TYPES: frozenset[str] = frozenset(
    {
        "sklearn.calibration._CalibratedClassifier",
        "sklearn.calibration._SigmoidCalibration",
        "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
        "sklearn.model_selection._split.TimeSeriesSplit",
    }
)
MAX_FILE_BYTES = 64 * 2**20  # a real classifier is ~150 KB (isotonic, 10 splits, 20k rows: ~0.5 MB)
MAX_UNPACKED_BYTES = 256 * 2**20
MAX_RATIO = 100  # tradeloop stores members uncompressed (ratio 1); deflated arrays stay far below


def refused_types(data: bytes) -> list[str]:
    """The types in a skops dump that are outside ``ALLOWED_TYPES`` (sorted); builds nothing."""
    return sorted(set(sio.get_untrusted_types(data=data)) - ALLOWED_TYPES)


def dump_classifier(model: object, path: Path) -> None:
    """Write a fitted classifier, refusing one that ``load_classifier`` would refuse."""
    data = sio.dumps(model)
    refused = refused_types(data)
    if refused:
        raise ModelError(
            f"the classifier holds types outside the allow-list {refused}; a model must use "
            "AdaptiveThreshold's default classifier (leave classifier= unset) so it can be loaded "
            "safely"
        )
    Path(path).write_bytes(data)


def load_classifier(path: Path, *, n_features: int) -> CalibratedClassifierCV:
    """Read ``path`` after checking every type it names against ``ALLOWED_TYPES``."""
    path = Path(path)
    data = _read_bounded(path)
    try:
        refused = refused_types(data)
    except Exception as exc:  # noqa: BLE001 - any parse failure means the file is not a skops file
        raise ModelError(
            f"{path} is not a readable skops file ({type(exc).__name__}: {exc}); restore it from "
            "the registry or train a new model"
        ) from None
    if refused:
        raise ModelError(
            f"{path} contains types outside the allow-list: {refused}; refusing to load it (it was "
            "not written by tradeloop: delete it and train a new model)"
        )
    try:
        model = sio.loads(data, trusted=sorted(ALLOWED_TYPES))
    except Exception as exc:  # noqa: BLE001 - skops' own audit or a malformed tree: refuse, never half-load
        raise ModelError(
            f"{path} could not be loaded ({type(exc).__name__}: {exc}); restore it from the "
            "registry or train a new model"
        ) from None
    if type(model) is not CalibratedClassifierCV:
        raise ModelError(
            f"{path} holds a {type(model).__name__}, not the CalibratedClassifierCV tradeloop writes; train a new model"
        )
    found = getattr(model, "n_features_in_", None)
    if found != n_features:
        raise ModelError(
            f"{path} holds a classifier for {found} features, but model.json lists {n_features}; "
            "the artifact is inconsistent: train a new model"
        )
    problem = _cannot_predict(model, n_features)
    if problem is not None:
        raise ModelError(
            f"{path} holds a classifier that cannot predict on {n_features} features ({problem}); "
            "the artifact is corrupt or crafted: train a new model"
        )
    return model


def _read_bounded(path: Path) -> bytes:
    """The file's bytes, refusing a missing file, a folder, an oversized file or a zip bomb."""
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_FILE_BYTES + 1)
            size = max(len(data), os.fstat(fh.fileno()).st_size)
    except FileNotFoundError:
        raise ModelError(
            f"{path} is missing: the model was saved with a trained classifier; restore the "
            "artifact from the registry or train a new model"
        ) from None
    except OSError as exc:  # a folder, a permission problem, a broken disk
        raise ModelError(
            f"{path} cannot be read ({type(exc).__name__}: {exc.strerror or exc}); it must be the "
            "classifier file tradeloop wrote: restore the artifact or train a new model"
        ) from None
    if size > MAX_FILE_BYTES:
        raise ModelError(
            f"{path} is {size:,} bytes, more than the {MAX_FILE_BYTES:,}-byte bound for a classifier "
            "file (tradeloop's are under 1 MB); it is not one tradeloop wrote: train a new model"
        )
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            unpacked = sum(info.file_size for info in zf.infolist())
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        raise ModelError(
            f"{path} is not a readable skops file ({type(exc).__name__}: {exc}); restore it from "
            "the registry or train a new model"
        ) from None
    if unpacked > MAX_UNPACKED_BYTES:
        raise ModelError(
            f"{path} unpacks to {unpacked:,} bytes, more than the {MAX_UNPACKED_BYTES:,}-byte bound "
            "(a decompression bomb, not a classifier tradeloop wrote); refusing to expand it: delete "
            "it and train a new model"
        )
    if unpacked > MAX_RATIO * max(len(data), 1):
        raise ModelError(
            f"{path} unpacks to {unpacked // max(len(data), 1)} times its size ({len(data):,} -> "
            f"{unpacked:,} bytes), more than {MAX_RATIO} times (a decompression bomb); refusing to "
            "expand it: delete it and train a new model"
        )
    return data


def _bad_trees(estimator: object, n_features: int) -> str | None:
    """Why a boosted model's trees could make prediction read out of bounds, or None."""
    predictors = getattr(estimator, "_predictors", None)
    if predictors is None:
        return None
    if getattr(estimator, "is_categorical_", None) is not None or getattr(estimator, "_preprocessor", None) is not None:
        return "categorical splits, which tradeloop never trains"
    for k, per_iteration in enumerate(predictors):
        for predictor in per_iteration:
            nodes: Any = getattr(predictor, "nodes", None)
            names = getattr(getattr(nodes, "dtype", None), "names", None) or ()
            if not {"left", "right", "feature_idx", "is_leaf", "is_categorical"} <= set(names) or nodes.ndim != 1:
                return f"tree {k} has no valid node table"
            inner = ~nodes["is_leaf"].astype(bool)
            size = len(nodes)
            if size == 0 or nodes["is_categorical"].any():
                return f"tree {k} is empty or has a categorical split"
            parent = np.flatnonzero(inner)
            for side in ("left", "right"):
                child = nodes[side][inner].astype(np.int64)
                if child.size and ((child <= parent).any() or child.max() >= size):
                    return f"tree {k}: a {side} child is not a later node of its {size}"
            feature = nodes["feature_idx"][inner].astype(np.int64)
            if feature.size and (feature.min() < 0 or feature.max() >= n_features):
                return f"tree {k}: a split reads a feature outside the {n_features} it has"
    return None


def _cannot_predict(model: CalibratedClassifierCV, n_features: int) -> str | None:
    """Why ``model`` would fail (or answer nonsense) at the first bar, or None when it predicts."""
    if not np.array_equal(np.asarray(getattr(model, "classes_", None)), [0, 1]):
        return f"classes_ = {getattr(model, 'classes_', None)!r}, not [0, 1]"
    for number, calibrated in enumerate(getattr(model, "calibrated_classifiers_", None) or ()):
        inner = getattr(calibrated, "estimator", None)
        steps = getattr(inner, "steps", None)
        final = steps[-1][1] if steps else inner
        for name, shape in (("coef_", (1, n_features)), ("intercept_", (1,))):
            value = getattr(final, name, None)
            if value is None:
                continue
            value = np.asarray(value)
            if value.shape != shape:
                return f"calibrated classifier {number}: {name} has shape {value.shape}, expected {shape}"
            if not np.issubdtype(value.dtype, np.number) or not np.all(np.isfinite(value)):
                return f"calibrated classifier {number}: {name} is not all finite numbers"
        problem = _bad_trees(final, n_features)
        if problem is not None:
            return f"calibrated classifier {number}: {problem}"
    rows = np.vstack([np.zeros(n_features), np.ones(n_features), -np.ones(n_features)])
    try:
        with np.errstate(all="ignore"):
            proba = np.asarray(model.predict_proba(rows), dtype=np.float64)
    except Exception as exc:  # noqa: BLE001 - whatever breaks prediction makes the model unusable
        return f"predict_proba raised {type(exc).__name__}: {str(exc)[:160]}"
    if proba.shape != (len(rows), 2):
        return f"predict_proba gave shape {proba.shape}, expected {(len(rows), 2)}"
    if not np.all(np.isfinite(proba)) or proba.min() < 0.0 or proba.max() > 1.0:
        return f"predict_proba gave {proba[:, 1].tolist()}, not finite probabilities in [0, 1]"
    return None
