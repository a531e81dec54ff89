"""Correlation-aware position sizing: volatility-targeted weights with cluster caps.

Rules for :func:`target_weights` (one window of returns, bars x symbols):

1. **Data.** A symbol is sized when it is wanted (``active``) and has at least ``min_obs``
   finite returns in the window; the covariance uses the rows where every sized symbol has
   a return (complete cases). Fewer than ``min_obs`` such rows, or a symbol whose returns do
   not vary, gets weight 0.
2. **Covariance.** ``S = LedoitWolf().fit(rows).covariance_ * periods_per_year`` (sklearn's
   shrinkage towards a scaled identity, annualised); per-symbol vol ``sigma_i = sqrt(S_ii)``;
   the shrunk correlation ``C = S / (sigma sigma')``.
3. **Clusters.** Hierarchical clustering (scipy, average linkage) on the distance
   ``1 - C``, cut at ``1 - corr_threshold``: symbols whose average correlation is at least
   ``corr_threshold`` share a cluster. One symbol is its own cluster.
4. **Shape.** Before scaling, ``b_i = (1 / sigma_i) / |cluster(i)|``: inverse volatility,
   shared within a cluster, so each cluster gets one symbol's risk budget.
5. **Scale.** Weights ``w = s * b`` grow with one scale ``s`` until the ex-ante volatility
   ``sqrt(w' S w)`` equals ``target_vol``, or a cap stops them: a symbol at ``max_weight``,
   a cluster whose summed weight reaches ``cluster_cap``, or the summed weight reaching
   ``gross_cap``. A symbol or cluster that reaches its cap is frozen there and the others
   keep growing (water filling); the gross cap freezes all. So the volatility hits the
   target unless the caps leave too little room, and no cap is ever exceeded.

:func:`size_frac_matrix` gives the backtest kernel's ``size_frac`` (bars x symbols): weights
from :func:`target_weights` on the window of ``window`` rows ending at bar ``r`` (returns
through ``r``'s close, known when ``r``'s decision is made), for ``r = window - 1,
window - 1 + rebalance_every, ...``, held for the ``rebalance_every`` bars from ``r`` on;
rows before the first full window are ``0`` (no entries). Row ``t`` never depends on rows
after ``t``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

# scipy and sklearn are imported where they are used: the pre-trade check (tradeloop.risk)
# does not pay for them on import


class SizingConfig(BaseModel):
    """Volatility target, caps and windows for correlation-aware sizing."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    target_vol: float = Field(gt=0, description="annualised portfolio volatility aimed at: 0.2 = 20%/year")
    periods_per_year: float = Field(
        gt=0, description="bars per year, e.g. 2190 for 4h bars (tradeloop.backtest.periods_per_year)"
    )
    max_weight: float = Field(default=1.0, gt=0, description="largest weight of one symbol, a fraction of equity")
    cluster_cap: float = Field(
        default=0.5, gt=0, description="largest summed weight of a cluster of correlated symbols, e.g. 0.5"
    )
    gross_cap: float = Field(default=1.0, gt=0, description="largest summed weight: 1.0 = no leverage")
    corr_threshold: float = Field(
        default=0.7, gt=-1, lt=1, description="symbols correlated at least this much share a cluster, e.g. 0.7"
    )
    min_obs: int = Field(default=20, ge=3, description="fewest complete rows of returns to size from, e.g. 20")
    window: int = Field(default=180, ge=3, description="size_frac_matrix: rows of returns per estimate, e.g. 180")
    rebalance_every: int = Field(default=6, ge=1, description="size_frac_matrix: bars between estimates, e.g. 6")

    @model_validator(mode="after")
    def _fits(self) -> SizingConfig:
        if self.min_obs > self.window:
            raise ValueError(
                f"min_obs={self.min_obs} exceeds window={self.window}: no window could be sized; "
                f"set min_obs <= {self.window} or a longer window"
            )
        return self


@dataclass(frozen=True, kw_only=True, slots=True)
class TargetWeights:
    """Weights per symbol (fractions of equity; 0 where not sized), the cluster label of each
    sized symbol (0 where not sized), the annualised covariance of the sized symbols (in
    ``sized`` order) and the weights' ex-ante annualised volatility."""

    weights: np.ndarray
    clusters: np.ndarray
    sized: np.ndarray
    covariance: np.ndarray
    volatility: float


def returns_from_closes(close: np.ndarray) -> np.ndarray:
    """Log returns of a (bars x symbols) close matrix, aligned on the bars: row ``t`` is
    ``log(close[t] / close[t-1])`` (known at ``t``'s close); row 0 and gaps are NaN."""
    close = np.asarray(close, dtype=np.float64)
    out = np.full(close.shape, np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        out[1:] = np.log(close[1:] / close[:-1])
    out[~np.isfinite(out)] = np.nan
    return out


def cluster_labels(corr: np.ndarray, *, threshold: float) -> np.ndarray:
    """Cluster labels (1..k) of symbols by average-linkage clustering on ``1 - corr``, cut where
    the average correlation falls below ``threshold`` (rule 3)."""
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import squareform

    m = corr.shape[0]
    if m == 1:
        return np.ones(1, dtype=np.int64)
    dist = np.clip(1.0 - corr, 0.0, 2.0)
    np.fill_diagonal(dist, 0.0)
    dist = (dist + dist.T) / 2.0
    tree = linkage(squareform(dist, checks=False), method="average")
    return fcluster(tree, t=1.0 - threshold, criterion="distance").astype(np.int64)


def target_weights(returns: np.ndarray, config: SizingConfig, *, active: np.ndarray | None = None) -> TargetWeights:
    """Weights that target ``config.target_vol`` under the caps (the module's rules 1-5).

    Parameters
    ----------
    returns
        (bars x symbols) returns of one window, NaN where missing.
    config
        Target, caps and minimum data.
    active
        Boolean mask of the symbols that want a position (default: all).

    Returns
    -------
    TargetWeights
        ``weights`` has one entry per column of ``returns``.
    """
    from sklearn.covariance import LedoitWolf

    returns = np.asarray(returns, dtype=np.float64)
    k = returns.shape[1]
    want = np.ones(k, dtype=bool) if active is None else np.asarray(active, dtype=bool).copy()
    want &= np.isfinite(returns).sum(axis=0) >= config.min_obs
    cols = np.flatnonzero(want)
    rows = returns[:, cols][np.isfinite(returns[:, cols]).all(axis=1)] if cols.size else returns[:0, :0]
    if cols.size and rows.shape[0] >= config.min_obs:
        keep = rows.std(axis=0) > 1e-12
        cols, rows = cols[keep], rows[:, keep]
    if not cols.size or rows.shape[0] < config.min_obs:
        return TargetWeights(
            weights=np.zeros(k),
            clusters=np.zeros(k, dtype=np.int64),
            sized=np.zeros(0, dtype=np.int64),
            covariance=np.zeros((0, 0)),
            volatility=0.0,
        )
    cov = LedoitWolf().fit(rows).covariance_ * config.periods_per_year
    sigma = np.sqrt(np.diag(cov))
    corr = np.clip(cov / np.outer(sigma, sigma), -1.0, 1.0)
    labels = cluster_labels(corr, threshold=config.corr_threshold)
    sizes = np.bincount(labels)[labels]
    w = _water_fill(cov, (1.0 / sigma) / sizes, labels, config)
    weights, clusters = np.zeros(k), np.zeros(k, dtype=np.int64)
    weights[cols], clusters[cols] = w, labels
    return TargetWeights(
        weights=weights,
        clusters=clusters,
        sized=cols,
        covariance=cov,
        volatility=float(np.sqrt(max(w @ cov @ w, 0.0))),
    )


def _water_fill(cov: np.ndarray, base: np.ndarray, labels: np.ndarray, config: SizingConfig) -> np.ndarray:
    """Rule 5: grow ``s * base`` on the free symbols until the volatility target or a cap."""
    m = base.size
    free = np.ones(m, dtype=bool)
    w = np.zeros(m)
    s = 0.0
    target2 = config.target_vol**2
    while free.any():
        bf = np.where(free, base, 0.0)
        wf = np.where(free, 0.0, w)
        a, c, d = bf @ cov @ bf, bf @ cov @ wf, wf @ cov @ wf
        disc = max(c * c - a * (d - target2), 0.0)
        s_target = max((-c + np.sqrt(disc)) / a, s)
        # the scale at which each cap binds, and what it freezes
        binds: list[tuple[float, np.ndarray]] = []
        for i in np.flatnonzero(free):
            binds.append((config.max_weight / base[i], np.arange(m) == i))
        for label in np.unique(labels[free]):
            members = labels == label
            room = config.cluster_cap - wf[members].sum()
            binds.append((room / bf[members].sum(), members & free))
        binds.append(((config.gross_cap - wf.sum()) / bf.sum(), free.copy()))
        s_bind = min(b[0] for b in binds)
        if s_target <= s_bind:
            return wf + s_target * bf
        s = s_bind
        w = wf + s * bf
        for scale, frozen in binds:
            if scale <= s_bind * (1.0 + 1e-12):
                free &= ~frozen
    return w


def size_frac_matrix(returns: np.ndarray, config: SizingConfig, *, wants: np.ndarray | None = None) -> np.ndarray:
    """The kernel's (bars x symbols) ``size_frac``: weights re-estimated every
    ``rebalance_every`` bars on the last ``window`` rows (see the module docstring).

    Parameters
    ----------
    returns
        (bars x symbols) returns aligned on the bars (row ``t`` known at ``t``'s close), e.g.
        :func:`returns_from_closes`.
    config
        Target, caps, window and rebalance period.
    wants
        Optional (bars x symbols) boolean: the symbols that want a position at each bar; a
        rebalance at bar ``r`` sizes those wanted at ``r`` (default: every symbol).

    Returns
    -------
    numpy.ndarray
        float64 (bars x symbols), 0 before the first full window.
    """
    returns = np.asarray(returns, dtype=np.float64)
    n, k = returns.shape
    out = np.zeros((n, k))
    for r in range(config.window - 1, n, config.rebalance_every):
        active = None if wants is None else wants[r]
        out[r : r + config.rebalance_every] = target_weights(
            returns[r - config.window + 1 : r + 1], config, active=active
        ).weights
    return out
