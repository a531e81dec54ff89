"""The live sequential test (``tradeloop.challengers.sequential``): its HAC standard error is
Newey-West's, its false-promotion rate on simulated equal-skill pairs stays within its stated
``alpha``, and it does promote a challenger with a real edge."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tradeloop.challengers import SequentialConfig, newey_west_lags, standing, statistic_path
from tradeloop.challengers.sequential import decisions

PAIRS, BARS = 2000, 1000


def _ar1(rng: np.random.Generator, shape: tuple[int, int], *, phi: float) -> np.ndarray:
    """Fat-tailed (Student t, 4 df), autocorrelated per-bar returns: positions held over bars."""
    shocks = rng.standard_t(4, size=shape) / math.sqrt(2.0) * 0.01
    out = np.empty(shape)
    out[:, 0] = shocks[:, 0]
    for t in range(1, shape[1]):
        out[:, t] = phi * out[:, t - 1] + shocks[:, t]
    return out


def _equal_skill_pairs(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Champion and challenger returns with the same mean, a common market part (correlated)
    and each its own autocorrelated noise."""
    rng = np.random.default_rng(seed)
    market = _ar1(rng, (PAIRS, BARS), phi=0.3)
    champion = 2e-4 + market + _ar1(rng, (PAIRS, BARS), phi=0.3)
    challenger = 2e-4 + market + _ar1(rng, (PAIRS, BARS), phi=0.3)
    return champion, challenger


def _newey_west(x: np.ndarray, lags: int) -> float:
    """The textbook long-run variance (Bartlett weights), one lag at a time."""
    n, m = x.size, x.mean()
    gammas = [np.sum((x[k:] - m) * (x[: n - k] - m)) / n for k in range(lags + 1)]
    return gammas[0] + 2.0 * sum((1.0 - k / (lags + 1.0)) * g for k, g in enumerate(gammas) if k)


def test_the_standard_error_after_each_bar_is_newey_wests() -> None:
    rng = np.random.default_rng(7)
    d = _ar1(rng, (1, 400), phi=0.5)[0] + 1e-3
    mean, se, _ = statistic_path(d, SequentialConfig())
    for n in (2, 17, 150, 400):
        lags = newey_west_lags(n)
        assert mean[0, n - 1] == pytest.approx(d[:n].mean(), rel=1e-12)
        assert se[0, n - 1] == pytest.approx(math.sqrt(_newey_west(d[:n], lags) / n), rel=1e-9)
    fixed = SequentialConfig(lags=9)
    _, se9, _ = statistic_path(d, fixed)
    assert se9[0, -1] == pytest.approx(math.sqrt(_newey_west(d, 9) / d.size), rel=1e-9)


def test_equal_skill_challengers_are_promoted_no_more_often_than_alpha() -> None:
    """2,000 seeded pairs of equal skill, the test read after every one of 1,000 bars: the share
    ever promoted (a false promotion) is within the stated bound."""
    config = SequentialConfig(alpha=0.05, min_bars=200)
    champion, challenger = _equal_skill_pairs(seed=16)
    mean, se, log_lr = statistic_path(challenger - champion, config)
    false_rate = decisions(mean, log_lr, config).any(axis=1).mean()
    assert false_rate <= config.alpha, false_rate
    # reading it after every bar is what the bound is for: the fixed-sample one-sided HAC t-test
    # at 5% (z > 1.645), read the same way from min_bars on, promotes more often than 5%
    after_min = np.arange(1, BARS + 1) >= config.min_bars
    naive = ((mean / se > 1.6449) & after_min).any(axis=1).mean()
    assert naive > 2 * config.alpha > 2 * false_rate


def test_a_challenger_with_a_real_edge_is_promoted_and_its_standing_says_so() -> None:
    config = SequentialConfig()
    champion, challenger = _equal_skill_pairs(seed=3)
    edge = 0.2 * np.std(challenger - champion)  # a per-bar Sharpe of the difference of 0.2
    mean, _, log_lr = statistic_path(challenger + edge - champion, config)
    assert decisions(mean, log_lr, config).any(axis=1).mean() >= 0.9
    one = standing(champion[0], challenger[0] + edge, config)
    assert one.bars == BARS and one.mean_diff > 0 and one.decision == "promote"
    assert one.log_lr >= one.threshold == pytest.approx(math.log(20.0))
    early = standing(champion[0, :150], challenger[0, :150] + edge, config)
    assert early.decision == "collecting"  # before min_bars, whatever the evidence
    same = standing(champion[0], champion[0], config)
    assert same.decision == "continue" and same.bars == BARS
