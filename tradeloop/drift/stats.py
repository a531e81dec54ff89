"""The statistics of a drift report, each from its textbook definition.

* Population stability index: the training window's values cut into ``bins`` bins at its
  own quantiles (fixed by the reference, never by the live window); the two outer bins are
  open, so live values beyond the training range land in them. With ``r_i``/``l_i`` the
  reference and live shares of bin ``i``, each floored at ``epsilon`` (an empty bin would
  make the log infinite), ``PSI = sum_i (l_i - r_i) * ln(l_i / r_i)``. A value equal to an
  edge belongs to the bin above it. Tied quantiles (a feature with few distinct values)
  merge into one edge, so such a feature has fewer bins.
* Two-sample Kolmogorov-Smirnov: ``scipy.stats.ks_2samp`` (the largest gap between the two
  empirical CDFs, exact or asymptotic p-value as scipy picks).
* Brier score: the mean of ``(p - y)^2`` over outcomes ``y`` in {0, 1}.
* Reliability: ``bins`` equal-width probability bins on [0, 1] (1.0 in the last); per bin the
  outcomes, the mean predicted probability and the realised rate; the expected calibration
  error is the outcome-weighted mean of ``|mean p - rate|``.
* Hit rate against expectation: with independent outcomes of probabilities ``p_i`` the hits
  have mean ``sum p_i`` and variance ``sum p_i (1 - p_i)`` (Poisson-binomial);
  ``z = (hits - sum p_i) / sqrt(sum p_i (1 - p_i))`` and a two-sided normal p-value.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from tradeloop.errors import ConfigError


def _finite(values: np.ndarray, what: str) -> np.ndarray:
    out = np.asarray(values, dtype=np.float64).ravel()
    out = out[np.isfinite(out)]
    if out.size == 0:
        raise ConfigError(f"{what} holds no finite value; give at least one row")
    return out


def quantile_edges(reference: np.ndarray, *, bins: int) -> np.ndarray:
    """The inner bin edges: the reference's quantiles at 1/bins .. (bins-1)/bins, ties merged."""
    if bins < 2:
        raise ConfigError(f"bins={bins}: a PSI needs at least 2 bins")
    ref = _finite(reference, "the reference window")
    return np.unique(np.quantile(ref, np.arange(1, bins) / bins))


def bin_shares(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Share of ``values`` in each of the ``len(edges) + 1`` bins (outer bins open)."""
    vals = _finite(values, "the window")
    counts = np.bincount(np.searchsorted(edges, vals, side="right"), minlength=edges.size + 1)
    return counts / vals.size


def psi(reference: np.ndarray, live: np.ndarray, *, bins: int = 10, epsilon: float = 1e-4) -> float:
    """Population stability index of ``live`` against ``reference`` (module rules)."""
    edges = quantile_edges(reference, bins=bins)
    ref = np.maximum(bin_shares(reference, edges), epsilon)
    cur = np.maximum(bin_shares(live, edges), epsilon)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def ks_test(reference: np.ndarray, live: np.ndarray) -> tuple[float, float]:
    """The two-sample KS statistic and its p-value (scipy)."""
    result = stats.ks_2samp(_finite(reference, "the reference window"), _finite(live, "the live window"))
    return float(result.statistic), float(result.pvalue)


def _outcomes(proba: np.ndarray, label: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(proba, dtype=np.float64).ravel()
    y = np.asarray(label, dtype=np.float64).ravel()
    if p.shape != y.shape:
        raise ConfigError(f"{p.size} probabilities for {y.size} outcomes: give one probability per outcome")
    if not (np.isfinite(p).all() and ((p >= 0) & (p <= 1)).all()):
        raise ConfigError("probabilities must be finite numbers in [0, 1]")
    if not np.isin(y, (0.0, 1.0)).all():
        raise ConfigError("outcomes must be 0 or 1")
    return p, y


def brier(proba: np.ndarray, label: np.ndarray) -> float:
    """Mean squared gap between predicted probability and outcome (NaN without outcomes)."""
    p, y = _outcomes(proba, label)
    return float(np.mean((p - y) ** 2)) if p.size else float("nan")


@dataclass(frozen=True, kw_only=True, slots=True)
class ReliabilityBin:
    """One probability bin: [low, high), outcomes in it, their mean probability and realised rate."""

    low: float
    high: float
    count: int
    mean_proba: float
    hit_rate: float


def reliability(proba: np.ndarray, label: np.ndarray, *, bins: int = 10) -> tuple[tuple[ReliabilityBin, ...], float]:
    """The non-empty reliability bins and the expected calibration error (module rules)."""
    p, y = _outcomes(proba, label)
    index = np.minimum((p * bins).astype(np.int64), bins - 1)
    rows, gap = [], 0.0
    for b in range(bins):
        mask = index == b
        if not mask.any():
            continue
        mean_p, rate = float(p[mask].mean()), float(y[mask].mean())
        rows.append(ReliabilityBin(low=b / bins, high=(b + 1) / bins, count=int(mask.sum()), mean_proba=mean_p,
                                   hit_rate=rate))  # fmt: skip
        gap += mask.sum() * abs(mean_p - rate)
    return tuple(rows), (gap / p.size if p.size else float("nan"))


@dataclass(frozen=True, kw_only=True, slots=True)
class HitRate:
    """Realised hits against the model's expectation over ``n`` outcomes."""

    n: int
    expected: float  # mean predicted probability
    realised: float  # share of outcomes that paid
    z: float
    pvalue: float


def hit_rate_test(proba: np.ndarray, label: np.ndarray) -> HitRate:
    """Poisson-binomial z-score of the hits against the sum of probabilities (module rules)."""
    p, y = _outcomes(proba, label)
    if p.size == 0:
        return HitRate(n=0, expected=float("nan"), realised=float("nan"), z=0.0, pvalue=1.0)
    var = float(np.sum(p * (1.0 - p)))
    gap = float(y.sum() - p.sum())
    z = gap / np.sqrt(var) if var > 0 else (0.0 if abs(gap) < 1e-9 else float(np.sign(gap)) * np.inf)
    return HitRate(n=p.size, expected=float(p.mean()), realised=float(y.mean()), z=float(z),
                   pvalue=float(2.0 * stats.norm.sf(abs(z))))  # fmt: skip
