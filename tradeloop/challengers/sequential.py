"""The live sequential test: does a challenger beat the champion on paired per-bar returns?

Rules:

1. **The evidence** is ``d_t = challenger_t - champion_t``, the two returns of one bar on the
   same candles (``live.shadow``). H0: ``E[d] <= 0`` (no better); promote only on evidence
   against it.
2. **Standard errors are HAC**: the long-run variance of ``d`` is Newey-West's (Bartlett
   weights, ``lags`` lags; None: ``floor(4 (n/100)^(2/9))``), so the autocorrelation of returns
   of positions held over several bars does not inflate the statistic.
3. **The statistic** is the one-sided mixture sequential probability ratio (mSPRT, Robbins
   1970; Johari et al. 2017) on the HAC t-statistic ``z = sqrt(n) mean(d) / s``: the likelihood
   ratios of every edge ``mu > 0`` mixed under a half-normal of scale ``effect`` (the per-bar
   Sharpe of ``d`` it is tuned to detect; ``r = n effect^2``):
   ``log L_n = log 2 - log(1 + r)/2 + r/(1 + r) z^2/2 + log Phi(z sqrt(r/(1 + r)))``, low for a
   challenger that lags. Under ``mu = 0`` ``L_n`` is a non-negative martingale of mean 1, so by
   Ville's inequality ``P(sup_n L_n >= 1/alpha) <= alpha`` (and less for ``mu < 0``): the test
   may be read after **every** bar and the false-promotion rate stays within ``alpha`` (the HAC
   variance is a plug-in; ``min_bars`` keeps its early noise out).
4. **Promote** when ``n >= min_bars``, ``mean(d) > 0`` and ``log L_n >= log(1/alpha)``; before
   ``min_bars`` the standing is ``collecting``; otherwise ``continue``. The test never demotes:
   a challenger that lags stays in shadow until an operator retires it.

``statistic_path`` evaluates rule 4 after every bar of one or many paths at once (cumulative
sums, no loop over bars): the live standing (``standing``) and the simulation of its
false-promotion rate (the tests) run this same code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from scipy.special import log_ndtr

LOG2 = math.log(2.0)

__all__ = ["SequentialConfig", "Standing", "newey_west_lags", "standing", "statistic_path"]


class SequentialConfig(BaseModel):
    """The live test's options (module rules)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    alpha: float = Field(default=0.05, gt=0.0, lt=0.5, description="the false-promotion rate the test stays within")
    min_bars: int = Field(default=200, ge=20, description="paired bars needed before any promotion")
    effect: float = Field(
        default=0.05, gt=0.0, le=1.0, description="per-bar Sharpe of the return difference the mixture is tuned to"
    )
    lags: int | None = Field(default=None, ge=0, description="HAC lags; None: floor(4 (n/100)^(2/9))")


def newey_west_lags(n: int) -> int:
    """Newey-West's rule of thumb for ``n`` observations, e.g. 4 for 200, 5 for 1000."""
    return int(math.floor(4.0 * (max(n, 1) / 100.0) ** (2.0 / 9.0)))


@dataclass(frozen=True, kw_only=True, slots=True)
class Standing:
    """The test after ``bars`` paired bars (module rules)."""

    bars: int
    mean_diff: float  # per bar
    hac_se: float  # standard error of the mean difference
    z: float
    log_lr: float  # log L_n
    threshold: float  # log(1/alpha)
    decision: str  # collecting | continue | promote
    champion_mean: float
    challenger_mean: float


def statistic_path(diffs: np.ndarray, config: SequentialConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(mean, hac_se, log_lr)`` after each bar of ``diffs`` (shape ``(bars,)`` or ``(paths,
    bars)``); NaN where the variance is not positive or fewer than two bars were seen."""
    d = np.atleast_2d(np.asarray(diffs, dtype=np.float64))
    paths, bars = d.shape
    n = np.arange(1, bars + 1, dtype=np.float64)
    zero = np.zeros((paths, 1))
    csum = np.concatenate([zero, np.cumsum(d, axis=1)], axis=1)  # csum[:, k] = sum of the first k
    mean = csum[:, 1:] / n
    lags = np.array([config.lags if config.lags is not None else newey_west_lags(int(k)) for k in n], dtype=np.int64)
    variance = np.zeros((paths, bars))
    for k in range(int(lags.max()) + 1):
        # sum_{t>k} (d_t - m)(d_{t-k} - m) over the first n bars, from cumulative sums
        prods = np.concatenate([zero, np.cumsum(d[:, k:] * d[:, : bars - k], axis=1)], axis=1)
        idx = np.clip(np.arange(1, bars + 1) - k, 0, None)  # products available after n bars
        cross = prods[:, idx]
        lead = csum[:, 1:] - csum[:, [min(k, bars)]]  # sum_{t=k+1}^{n} d_t
        lagged = csum[:, idx]  # sum_{t=1}^{n-k} d_t
        count = np.clip(n - k, 0, None)
        gamma = (cross - mean * (lead + lagged) + count * mean**2) / n
        weight = np.where(k <= lags, 1.0 - k / (lags + 1.0), 0.0)
        variance += (1.0 if k == 0 else 2.0) * weight * np.where(count > 0, gamma, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        se = np.where((variance > 0) & (n >= 2), np.sqrt(variance / n), np.nan)
        z = mean / se
        r = n * config.effect**2
        log_lr = LOG2 - 0.5 * np.log1p(r) + r / (1.0 + r) * z**2 / 2.0 + log_ndtr(z * np.sqrt(r / (1.0 + r)))
    return mean, se, log_lr


def decisions(mean: np.ndarray, log_lr: np.ndarray, config: SequentialConfig) -> np.ndarray:
    """True where rule 4 promotes (same shape as its inputs)."""
    n = np.arange(1, mean.shape[-1] + 1)
    return (n >= config.min_bars) & (mean > 0) & (np.nan_to_num(log_lr, nan=-np.inf) >= math.log(1.0 / config.alpha))


def standing(champion: np.ndarray, challenger: np.ndarray, config: SequentialConfig) -> Standing:
    """The test on one challenger's paired returns, oldest bar first (module rules)."""
    a, b = np.asarray(champion, dtype=np.float64), np.asarray(challenger, dtype=np.float64)
    n = int(a.size)
    threshold = math.log(1.0 / config.alpha)
    if n < 2:
        return Standing(
            bars=n, mean_diff=float(np.mean(b - a)) if n else 0.0, hac_se=math.nan, z=math.nan, log_lr=math.nan,
            threshold=threshold, decision="collecting", champion_mean=float(np.mean(a)) if n else 0.0,
            challenger_mean=float(np.mean(b)) if n else 0.0,
        )  # fmt: skip
    mean, se, log_lr = (x[0, -1] for x in statistic_path(b - a, config))
    promote = n >= config.min_bars and mean > 0 and log_lr >= threshold  # rule 4, as ``decisions``
    return Standing(
        bars=n,
        mean_diff=float(mean),
        hac_se=float(se),
        z=float(mean / se) if se == se and se > 0 else math.nan,
        log_lr=float(log_lr),
        threshold=threshold,
        decision="collecting" if n < config.min_bars else ("promote" if promote else "continue"),
        champion_mean=float(a.mean()),
        challenger_mean=float(b.mean()),
    )
