"""``AdaptiveThreshold``: act on a strategy signal only when a calibrated meta-label
probability clears the break-even win rate plus a learned margin.

Break-even: a trade that wins ``W`` or loses ``L`` (both positive return sizes) and costs
``c`` per round trip pays on average when ``p * W - (1 - p) * L - c > 0``, i.e. when
``p > p* = (L + c) / (W + L)``. ``W`` and ``L`` are the mean winning and losing returns of
the training events. The threshold is ``p* + margin_``, the margin chosen on the most recent
``validation_fraction`` of the training events (time-ordered, purged) to maximise the mean
net return of the events it keeps (no margin when none keeps ``min_kept`` events). ``p*``
alone is the static fallback: without enough
events to train, and whenever a trained model is missing or stale (see ``is_stale``).

The classifier (``model``): ``"logistic"`` (standardised logistic regression, the default) or
``"hgb"`` (scikit-learn's ``HistGradientBoostingClassifier``, shallow and regularised), both
calibrated the same way. ``max_features``: keep only the columns with the most mutual
information with the label on the rows ``fit`` is given (``support_``; see
``tradeloop.thresholds.selection``), so inside a walk-forward the selection never sees a test row.

Fitting and predicting run with one OpenMP thread (``one_thread``): the boosted trees' OpenMP
pool spins when its cores are busy, and on a loaded 2-core machine a fit took 100 s with the
default threads against 2 s with one (measured; a live engine shares its cores too).
"""

from __future__ import annotations

from functools import cache

import numpy as np
import sklearn
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import TimeSeriesSplit
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.validation import check_is_fitted
from threadpoolctl import ThreadpoolController  # type: ignore[import-untyped]

from tradeloop.errors import ConfigError, ModelError
from tradeloop.features.cache import active_cache, array_digest
from tradeloop.thresholds.selection import mutual_information

#: the classifiers ``AdaptiveThreshold(model=...)`` builds
MODEL_KINDS: tuple[str, ...] = ("logistic", "hgb")


@cache
def _threadpools() -> ThreadpoolController:
    return ThreadpoolController()  # finds the loaded thread pools once (~30 ms); limiting is then ~40 us


def one_thread():
    """A context in which OpenMP (the boosted trees' threads) uses one thread."""
    return _threadpools().limit(limits=1, user_api="openmp")


def break_even_probability(win: float, loss: float, cost: float) -> float:
    """p* = (L + c) / (W + L) for mean win W > 0, mean loss L > 0 and round-trip cost c >= 0."""
    if not (win > 0 and loss > 0 and cost >= 0):
        raise ConfigError(f"break-even needs win > 0, loss > 0, cost >= 0; got W={win}, L={loss}, c={cost}")
    return min(1.0, (loss + cost) / (win + loss))


def purged_calibration_splits(
    y: np.ndarray, ts: np.ndarray, t1: np.ndarray, *, n_splits: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Walk-forward calibration folds over time-ordered events, purged: a fold's training
    events are decided before it and their labels end before it starts. Folds whose training
    part holds one class only are left out (nothing to calibrate on)."""
    from tradeloop.evaluation import PurgedWalkForward

    splits = []
    try:
        folds = list(PurgedWalkForward(n_splits=n_splits).split(ts, t1))
    except ConfigError:  # fewer distinct times than folds
        return [(np.arange(len(y) // 2), np.arange(len(y) // 2, len(y)))]
    for fold in folds:
        if fold.test.size and np.unique(y[fold.train]).size == 2:
            splits.append((fold.train, fold.test))
    if not splits:
        raise ModelError(
            f"no purged calibration fold of {len(y)} events has both outcomes in its training part; "
            "use fewer calibration_splits or more data"
        )
    return splits


class AdaptiveThreshold(ClassifierMixin, BaseEstimator):
    """Meta-labeling classifier + break-even threshold with a learned margin.

    ``fit(X, y, returns=..., t1=..., ts=...)``: ``y`` is 1 where acting paid after costs,
    ``returns`` the gross event returns (for W and L), ``ts``/``t1`` each event's decision
    and label-end times (for the purged validation split). Rows must be in time order.
    """

    def __init__(
        self,
        *,
        classifier=None,
        model: str = "logistic",
        max_features: int | None = None,
        calibration: str = "sigmoid",
        calibration_splits: int = 3,
        margins: tuple[float, ...] = (0.0, 0.02, 0.05, 0.1),
        validation_fraction: float = 0.3,
        min_samples: int = 60,
        min_kept: int = 10,
        cost: float = 0.002,
        bounds: tuple[float, float] = (0.05, 0.95),
        random_state: int = 0,
    ):
        self.classifier = classifier
        self.model = model
        self.max_features = max_features
        self.calibration = calibration
        self.calibration_splits = calibration_splits
        self.margins = margins
        self.validation_fraction = validation_fraction
        self.min_samples = min_samples
        self.min_kept = min_kept
        self.cost = cost
        self.bounds = bounds
        self.random_state = random_state

    # ------------------------------------------------------------------ fitting
    def _check_params(self) -> None:
        if self.model not in MODEL_KINDS:
            raise ConfigError(f"model={self.model!r}: use one of {list(MODEL_KINDS)}")
        if self.max_features is not None and (not isinstance(self.max_features, int) or self.max_features < 1):
            raise ConfigError(
                f"max_features={self.max_features!r}: give a positive number of features, or None for all"
            )
        if self.calibration not in ("sigmoid", "isotonic"):
            raise ConfigError(f"calibration={self.calibration!r}: use 'sigmoid' or 'isotonic'")
        lo, hi = self.bounds
        if not 0.0 <= lo < hi <= 1.0:
            raise ConfigError(f"bounds={self.bounds}: need 0 <= low < high <= 1")
        if not 0.0 < self.validation_fraction < 1.0:
            raise ConfigError(f"validation_fraction={self.validation_fraction}: must lie in (0, 1)")
        if not self.margins or min(self.margins) < 0:
            raise ConfigError(f"margins={self.margins}: give one or more non-negative margins")

    def _new_model(self, y, ts, t1):
        """The calibrated classifier; its calibration folds are purged like the walk-forward's
        (a training label must end before its calibration fold starts) when ``ts``/``t1`` are known."""
        base = self.classifier if self.classifier is not None else self._default_classifier()
        cv = (
            TimeSeriesSplit(n_splits=self.calibration_splits)
            if ts is None or t1 is None
            else purged_calibration_splits(
                np.asarray(y), np.asarray(ts), np.asarray(t1), n_splits=self.calibration_splits
            )
        )
        return CalibratedClassifierCV(clone(base), method=self.calibration, cv=cv)

    def _default_classifier(self):
        if self.model == "hgb":  # shallow, slow-learning, no early stopping (its split would not be purged)
            return HistGradientBoostingClassifier(
                learning_rate=0.05,
                max_iter=100,
                max_leaf_nodes=15,
                min_samples_leaf=40,
                l2_regularization=1.0,
                early_stopping=False,
                random_state=self.random_state,
            )
        return make_pipeline(
            StandardScaler(),
            LogisticRegression(C=0.5, max_iter=500, solver="newton-cholesky", random_state=self.random_state),
        )

    def fit(self, X, y, *, returns, ts=None, t1=None):
        self._check_params()
        # inputs are checked here; skip scikit-learn's per-call re-validation (a walk-forward
        # refits hundreds of times per trial, and that validation was a third of the time)
        cache = active_cache()
        with sklearn.config_context(assume_finite=True, skip_parameter_validation=True), one_thread():
            if cache is None:
                return self._fit(X, y, returns=returns, ts=ts, t1=t1)
            # the same parameters on the same rows fit the same model (random_state is a parameter): a
            # walk-forward's fold refits the previous fold's last model, a retrain may see no new event
            arrays = [np.asarray(a) for a in (X, y, returns, ts, t1) if a is not None]
            params = repr(sorted(self.get_params(deep=False).items()))
            key = ("adaptive_threshold_fit", params, ts is None, t1 is None, array_digest(*arrays))
            fitted = cache.get(key, lambda: clone(self)._fit(X, y, returns=returns, ts=ts, t1=t1))
            self.__dict__.update({k: v for k, v in vars(fitted).items() if k.endswith("_")})  # learned attributes
            return self

    def _fit(self, X, y, *, returns, ts, t1):
        X = np.asarray(X, dtype=np.float64)
        y = np.asarray(y, dtype=np.int64)
        returns = np.asarray(returns, dtype=np.float64)
        if not (X.ndim == 2 and len(X) == len(y) == len(returns)):
            raise ConfigError(f"X {X.shape}, y {y.shape} and returns {returns.shape} must have one row per event")
        if not (np.isfinite(X).all() and np.isfinite(returns).all()):
            raise ConfigError(
                "X and returns must be finite numbers; drop events whose features are still warming "
                "up (meta_dataset does)"
            )
        self.n_features_in_ = X.shape[1]
        self.classes_ = np.array([0, 1])
        self.support_ = self._select(X, y)
        X = X[:, self.support_]
        wins, losses = returns[returns > 0], -returns[returns <= 0]
        win = float(wins.mean()) if wins.size else 1e-6
        loss = float(losses.mean()) if losses.size and losses.mean() > 0 else 1e-6
        self.p_star_ = break_even_probability(win, loss, self.cost)
        self.n_samples_ = len(y)
        self.fallback_ = len(y) < self.min_samples or np.unique(y).size < 2
        self.base_rate_ = float(y.mean()) if len(y) else 0.0
        self.margin_ = 0.0
        self.model_ = None
        self.validation_: dict[str, object] = {}
        if not self.fallback_:
            try:
                self.margin_, self.validation_ = self._choose_margin(X, y, returns, ts, t1)
                self.model_ = self._new_model(y, ts, t1).fit(X, y)
            except ModelError as exc:  # no purged calibration fold possible: p* alone
                self.fallback_, self.margin_, self.model_ = True, 0.0, None
                self.validation_ = {"reason": str(exc)}
        self.threshold_ = float(np.clip(self.p_star_ + self.margin_, *self.bounds))
        return self

    def _choose_margin(self, X, y, returns, ts, t1) -> tuple[float, dict[str, object]]:
        n = len(y)
        cut = int(n * (1.0 - self.validation_fraction))
        if ts is not None and t1 is not None:  # purge: training labels must end before validation starts
            ts, t1 = np.asarray(ts), np.asarray(t1)
            train = np.flatnonzero(t1[:cut] < ts[cut])
        else:
            train = np.arange(cut)
        val = np.arange(cut, n)
        if train.size < self.min_samples // 2 or np.unique(y[train]).size < 2:
            return 0.0, {"reason": "too few purged training events for validation: p* alone"}
        sub_ts, sub_t1 = (None, None) if ts is None or t1 is None else (ts[train], t1[train])
        proba = self._new_model(y[train], sub_ts, sub_t1).fit(X[train], y[train]).predict_proba(X[val])[:, 1]
        net = returns[val] - self.cost
        best, best_value, table = 0.0, -np.inf, {}  # no margin keeps enough events: p* alone
        for m in sorted(self.margins):
            keep = proba > self.p_star_ + m
            value = float(net[keep].mean()) if keep.sum() >= self.min_kept else -np.inf
            table[f"{m:g}"] = {"kept": int(keep.sum()), "mean_net_return": value}
            if value > best_value:
                best, best_value = m, value
        return best, {"margins": table, "validation_events": int(val.size)}

    def _select(self, X: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Bool mask of the columns kept: all, or the ``max_features`` most informative on these rows."""
        keep = np.ones(X.shape[1], dtype=bool)
        if self.max_features is None or self.max_features >= X.shape[1] or np.unique(y).size < 2:
            return keep
        order = np.argsort(-mutual_information(X, y), kind="stable")  # ties: the earlier column
        keep[:] = False
        keep[order[: self.max_features]] = True
        return keep

    # ------------------------------------------------------------------ using
    def predict_proba(self, X) -> np.ndarray:
        check_is_fitted(self, "threshold_")
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_features_in_:
            raise ModelError(f"expected {self.n_features_in_} features per row, got shape {X.shape}")
        if self.model_ is None:  # static fallback: no features used, the base win rate for all
            p = np.full(len(X), self.base_rate_)
            return np.column_stack([1.0 - p, p])
        support = getattr(self, "support_", None)
        with one_thread():
            return self.model_.predict_proba(X if support is None else X[:, support])

    def decision_function(self, X) -> np.ndarray:
        """Calibrated probability minus the threshold: act where > 0."""
        return self.predict_proba(X)[:, 1] - self.threshold_

    def predict(self, X) -> np.ndarray:
        """1 where acting on the signal is expected to pay after costs."""
        return (self.decision_function(X) > 0).astype(np.int64)
