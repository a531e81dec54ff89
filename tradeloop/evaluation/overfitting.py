"""Overfitting statistics: probabilistic and deflated Sharpe ratio, PBO by CSCV.

References: Bailey & López de Prado, "The Sharpe Ratio Efficient Frontier" (2012, PSR),
"The Deflated Sharpe Ratio" (2014, DSR); Bailey, Borwein, López de Prado & Zhu, "The
Probability of Backtest Overfitting" (2016, CSCV/PBO). Sharpe ratios here are per period
(not annualised), as in the papers.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
from scipy import stats

from tradeloop.errors import ConfigError

EULER_GAMMA = 0.5772156649015329


def sharpe_per_period(returns: np.ndarray) -> float:
    r = np.asarray(returns, dtype=np.float64)
    r = r[np.isfinite(r)]
    if r.size < 2:
        return 0.0
    sd = r.std(ddof=1)
    return float(r.mean() / sd) if sd > 0 else 0.0


def probabilistic_sharpe(returns: np.ndarray, benchmark_sr: float = 0.0) -> float:
    """P(true Sharpe > benchmark) given the sample's length, skewness and kurtosis."""
    r = np.asarray(returns, dtype=np.float64)
    r = r[np.isfinite(r)]
    n = r.size
    if n < 3 or r.std() == 0:
        return 0.0
    sr = sharpe_per_period(r)
    skew = float(stats.skew(r))
    kurt = float(stats.kurtosis(r, fisher=False))
    denom = 1.0 - skew * sr + (kurt - 1.0) / 4.0 * sr**2
    if denom <= 0:
        return 0.0
    return float(stats.norm.cdf((sr - benchmark_sr) * math.sqrt(n - 1) / math.sqrt(denom)))


def expected_max_sharpe(n_trials: int, sharpe_variance: float) -> float:
    """E[max SR] of ``n_trials`` unskilled strategies whose Sharpe ratios vary by ``sharpe_variance``."""
    if n_trials < 1:
        raise ConfigError(f"n_trials={n_trials}: need at least one trial")
    if n_trials == 1 or sharpe_variance <= 0:
        return 0.0
    z1 = stats.norm.ppf(1.0 - 1.0 / n_trials)
    z2 = stats.norm.ppf(1.0 - 1.0 / (n_trials * math.e))
    return float(math.sqrt(sharpe_variance) * ((1.0 - EULER_GAMMA) * z1 + EULER_GAMMA * z2))


def deflated_sharpe(returns: np.ndarray, *, trial_sharpes: np.ndarray) -> float:
    """PSR against the Sharpe the best of ``len(trial_sharpes)`` lucky trials would reach."""
    trial = np.asarray(trial_sharpes, dtype=np.float64)
    trial = trial[np.isfinite(trial)]
    var = float(trial.var(ddof=1)) if trial.size > 1 else 0.0
    return probabilistic_sharpe(returns, expected_max_sharpe(max(trial.size, 1), var))


def probability_of_backtest_overfitting(performance: np.ndarray, *, n_partitions: int = 8) -> float:
    """PBO by combinatorially symmetric cross-validation.

    ``performance`` is (periods x trials) of per-period returns. The periods are cut into
    ``n_partitions`` blocks; for every half/half combination the trial with the best
    in-sample Sharpe is ranked out of sample. PBO = share of combinations where it lands
    at or below the out-of-sample median (logit <= 0).
    """
    m = np.asarray(performance, dtype=np.float64)
    if m.ndim != 2 or m.shape[1] < 2:
        raise ConfigError(f"PBO needs (periods x trials) with >= 2 trials; got shape {m.shape}")
    if n_partitions < 2 or n_partitions % 2:
        raise ConfigError(f"n_partitions={n_partitions}: must be an even number >= 2")
    if m.shape[0] < 2 * n_partitions:
        raise ConfigError(f"{m.shape[0]} periods are too few for {n_partitions} partitions")
    m = np.nan_to_num(m, nan=0.0)
    blocks = np.array_split(np.arange(m.shape[0]), n_partitions)
    logits = []
    for chosen in itertools.combinations(range(n_partitions), n_partitions // 2):
        ins = np.concatenate([blocks[i] for i in chosen])
        oos = np.concatenate([blocks[i] for i in range(n_partitions) if i not in chosen])
        best = int(np.argmax(_sharpes(m[ins])))
        oos_sr = _sharpes(m[oos])
        rank = (np.sum(oos_sr < oos_sr[best]) + 0.5 * np.sum(oos_sr == oos_sr[best]) + 0.5) / (m.shape[1] + 1)
        logits.append(math.log(rank / (1.0 - rank)))
    return float(np.mean(np.asarray(logits) <= 0.0))


def _sharpes(block: np.ndarray) -> np.ndarray:
    sd = block.std(axis=0, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(sd > 0, block.mean(axis=0) / sd, 0.0)
