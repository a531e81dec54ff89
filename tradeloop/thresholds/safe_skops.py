"""The classifier file (``classifier.skops``): written and read with an exact type allow-list.

Rules:

- Nothing is constructed before the file's untrusted-type listing
  (``skops.io.get_untrusted_types``, skops' own audit of every node) has been checked.
  Every name it reports must be in ``ALLOWED_TYPES``, compared whole: no prefix matching,
  so no ``builtins.*``, ``operator.*``, ``functools.*`` or ``posix.*`` callable ever gets
  through. A refused file names the refused types.
- ``ALLOWED_TYPES`` is exactly what skops reports for the classifiers this project
  trains: ``AdaptiveThreshold``'s default pipeline (``StandardScaler`` +
  ``LogisticRegression``) calibrated by ``CalibratedClassifierCV`` over a
  ``TimeSeriesSplit``, with ``calibration="sigmoid"`` or ``"isotonic"``. The types skops
  trusts by itself (scikit-learn estimators, numpy arrays and dtypes, primitives) are
  never reported and need no entry. tests/thresholds/test_safe_skops.py trains both and
  requires the listing to equal this set, so a scikit-learn upgrade that changes it fails
  the build instead of loosening the check.
- The bytes are read once: the listing and the load see the same bytes, and skops' own
  audit runs again at load with the same allow-list.
- What comes out must be a ``CalibratedClassifierCV`` over the expected number of
  features; anything else is refused.
- Saving checks the same list first, so a model that could not be loaded is never
  written (a custom ``classifier=`` with other types is refused at save time).
"""

from __future__ import annotations

from pathlib import Path

import skops.io as sio
from sklearn.calibration import CalibratedClassifierCV

from tradeloop.errors import ModelError

ALLOWED_TYPES: frozenset[str] = frozenset({
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration._SigmoidCalibration",
    "sklearn.model_selection._split.TimeSeriesSplit",
})


def refused_types(data: bytes) -> list[str]:
    """The types in a skops dump that are outside ``ALLOWED_TYPES`` (sorted); builds nothing."""
    return sorted(set(sio.get_untrusted_types(data=data)) - ALLOWED_TYPES)


def dump_classifier(model: object, path: Path) -> None:
    """Write a fitted classifier, refusing one that ``load_classifier`` would refuse."""
    data = sio.dumps(model)
    refused = refused_types(data)
    if refused:
        raise ModelError(f"the classifier holds types outside the allow-list {refused}; a model must use "
                         "AdaptiveThreshold's default classifier (leave classifier= unset) so it can be loaded "
                         "safely")
    Path(path).write_bytes(data)


def load_classifier(path: Path, *, n_features: int) -> CalibratedClassifierCV:
    """Read ``path`` after checking every type it names against ``ALLOWED_TYPES``."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ModelError(f"{path} is missing: the model was saved with a trained classifier; restore the "
                         "artifact from the registry or train a new model") from None
    try:
        refused = refused_types(data)
    except Exception as exc:  # noqa: BLE001 - any parse failure means the file is not a skops file
        raise ModelError(f"{path} is not a readable skops file ({type(exc).__name__}: {exc}); restore it from "
                         "the registry or train a new model") from None
    if refused:
        raise ModelError(f"{path} contains types outside the allow-list: {refused}; refusing to load it (it was "
                         "not written by tradeloop: delete it and train a new model)")
    try:
        model = sio.loads(data, trusted=sorted(ALLOWED_TYPES))
    except Exception as exc:  # noqa: BLE001 - skops' own audit or a malformed tree: refuse, never half-load
        raise ModelError(f"{path} could not be loaded ({type(exc).__name__}: {exc}); restore it from the "
                         "registry or train a new model") from None
    if type(model) is not CalibratedClassifierCV:
        raise ModelError(f"{path} holds a {type(model).__name__}, not the CalibratedClassifierCV tradeloop "
                         "writes; train a new model")
    found = getattr(model, "n_features_in_", None)
    if found != n_features:
        raise ModelError(f"{path} holds a classifier for {found} features, but model.json lists {n_features}; "
                         "the artifact is inconsistent: train a new model")
    return model
