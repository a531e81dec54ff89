"""PSR, DSR and PBO against their definitions and on cases with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from tradeloop.errors import ConfigError
from tradeloop.evaluation import (
    deflated_sharpe,
    expected_max_sharpe,
    probabilistic_sharpe,
    probability_of_backtest_overfitting,
)


def test_psr_matches_the_closed_form_of_bailey_and_lopez_de_prado() -> None:
    r = np.random.default_rng(1).standard_t(5, 2000) * 0.01 + 0.001
    sr = r.mean() / r.std(ddof=1)
    g3, g4 = stats.skew(r), stats.kurtosis(r, fisher=False)
    expected = stats.norm.cdf((sr - 0.01) * math.sqrt(r.size - 1) / math.sqrt(1 - g3 * sr + (g4 - 1) / 4 * sr**2))
    assert probabilistic_sharpe(r, 0.01) == pytest.approx(expected, rel=1e-12)


def test_expected_max_sharpe_grows_with_trials_and_dsr_deflates() -> None:
    assert expected_max_sharpe(1, 0.01) == 0.0
    values = [expected_max_sharpe(n, 0.01) for n in (2, 10, 100, 1000)]
    assert values == sorted(values) and values[0] > 0
    r = np.random.default_rng(2).normal(0.0005, 0.01, 3000)
    trials = np.random.default_rng(3).normal(0.0, 0.02, 200)
    assert deflated_sharpe(r, trial_sharpes=trials) < probabilistic_sharpe(r, 0.0)


def test_pbo_is_low_for_a_real_edge_and_high_for_selected_noise() -> None:
    rng = np.random.default_rng(5)
    noise = rng.normal(0, 0.01, (800, 20))
    edge = noise.copy()
    edge[:, 7] += 0.004  # one trial truly better in every period
    assert probability_of_backtest_overfitting(edge, n_partitions=8) < 0.05
    assert probability_of_backtest_overfitting(noise, n_partitions=8) > 0.25


def test_pbo_bad_shapes_are_refused() -> None:
    with pytest.raises(ConfigError, match=">= 2 trials"):
        probability_of_backtest_overfitting(np.zeros((100, 1)))
    with pytest.raises(ConfigError, match="even number"):
        probability_of_backtest_overfitting(np.zeros((100, 3)), n_partitions=5)
