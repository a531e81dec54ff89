"""The drift statistics against hand computations from their definitions (not from the code):
PSI on a split uniform and on shifted normals (the binned PSI from the normal CDF), the KS
statistic, the Brier score, reliability bins, the hit-rate z-score; the config's fix-it messages."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import norm

from tradeloop.drift import DriftConfig, brier, feature_drift, hit_rate_test, ks_test, psi, quantile_edges, reliability
from tradeloop.errors import ConfigError


def test_psi_of_a_uniform_whose_live_half_is_missing_matches_the_definition() -> None:
    reference, live = np.arange(1000.0), np.arange(500.0)
    # quartiles of 0..999 (linear interpolation): 249.75, 499.5, 749.25
    assert quantile_edges(reference, bins=4) == pytest.approx([249.75, 499.5, 749.25])
    eps = 1e-4  # live shares 0.5, 0.5, 0, 0 (floored at eps) against 0.25 each
    by_hand = 2 * (0.5 - 0.25) * math.log(0.5 / 0.25) + 2 * (eps - 0.25) * math.log(eps / 0.25)
    assert psi(reference, live, bins=4, epsilon=eps) == pytest.approx(by_hand, rel=1e-12)
    assert psi(reference, reference, bins=4) == 0.0


def test_psi_puts_live_values_beyond_the_training_range_in_the_outer_bins() -> None:
    reference = np.arange(100.0)
    far = np.full(100, 1e9)  # every live value above the largest edge: all in the top decile bin
    eps = 1e-4
    by_hand = (1.0 - 0.1) * math.log(1.0 / 0.1) + 9 * (eps - 0.1) * math.log(eps / 0.1)
    assert psi(reference, far, bins=10, epsilon=eps) == pytest.approx(by_hand, rel=1e-12)


def binned_normal_psi(shift: float, bins: int = 10) -> float:
    """PSI of N(shift, 1) against N(0, 1) on the reference's quantile bins, from the normal CDF."""
    edges = np.concatenate([[-np.inf], norm.ppf(np.arange(1, bins) / bins), [np.inf]])
    live = np.diff(norm.cdf(edges - shift))
    return float(np.sum((live - 1 / bins) * np.log(live * bins)))


def test_a_shifted_normal_is_above_the_bar_and_the_same_normal_below() -> None:
    rng = np.random.default_rng(7)
    reference = rng.normal(0.0, 1.0, 20_000)
    shifted, same = rng.normal(1.0, 1.0, 20_000), rng.normal(0.0, 1.0, 20_000)
    expected = binned_normal_psi(1.0)  # about 0.9: the continuous PSI of a 1-sigma shift is 1.0
    assert 0.8 < expected < 1.0
    assert psi(reference, shifted) == pytest.approx(expected, abs=0.05)
    assert psi(reference, shifted) > DriftConfig().psi_bar
    # same distribution: the expected PSI is about (bins - 1) * (1/n + 1/m) = 0.0009
    assert psi(reference, same) < 0.01
    assert ks_test(reference, shifted)[1] < 1e-12
    statistic, _ = ks_test(reference, shifted)
    assert statistic == pytest.approx(norm.cdf(0.5) - norm.cdf(-0.5), abs=0.02)  # the CDFs' largest gap, at x=0.5


def test_ks_statistic_is_the_largest_gap_between_the_empirical_cdfs() -> None:
    # F_ref(4) = 4/4, F_live(4) = 2/4: the largest gap is 0.5
    statistic, pvalue = ks_test(np.array([1.0, 2, 3, 4]), np.array([3.0, 4, 5, 6]))
    assert statistic == pytest.approx(0.5) and 0 < pvalue <= 1


def test_brier_reliability_and_expected_calibration_error_by_hand() -> None:
    assert brier(np.array([0.8, 0.3, 0.5]), np.array([1, 0, 0])) == pytest.approx((0.04 + 0.09 + 0.25) / 3)
    rows, ece = reliability(np.array([0.05, 0.15, 0.12, 0.95]), np.array([0, 1, 0, 1]), bins=10)
    assert [(r.low, r.count, r.hit_rate) for r in rows] == [(0.0, 1, 0.0), (0.1, 2, 0.5), (0.9, 1, 1.0)]
    assert rows[1].mean_proba == pytest.approx(0.135)
    assert ece == pytest.approx((1 * 0.05 + 2 * abs(0.135 - 0.5) + 1 * 0.05) / 4)
    with pytest.raises(ConfigError, match="one probability per outcome"):
        brier(np.array([0.5]), np.array([1, 0]))


def test_hit_rate_z_is_the_poisson_binomial_gap() -> None:
    result = hit_rate_test(np.full(100, 0.5), np.array([1] * 70 + [0] * 30))
    assert result.z == pytest.approx((70 - 50) / math.sqrt(100 * 0.25))  # = 4
    assert result.pvalue == pytest.approx(math.erfc(4 / math.sqrt(2)))  # two-sided normal tail
    assert (result.expected, result.realised) == (0.5, 0.7)
    mixed = hit_rate_test(np.array([0.2, 0.8, 0.5]), np.array([0, 1, 1]))
    assert mixed.z == pytest.approx((2 - 1.5) / math.sqrt(0.16 + 0.16 + 0.25))


def test_a_feature_with_too_few_rows_is_not_judged() -> None:
    config = DriftConfig()
    row = feature_drift("vol_20", np.arange(50.0), np.arange(1000.0, 1050.0), config=config)
    assert row.psi is None and not row.drifted and row.reference_rows == 50


def test_config_errors_name_the_field_the_value_and_the_fix() -> None:
    with pytest.raises(ConfigError, match=r"psi_bar=-1\.0.*PSI above which"):
        DriftConfig.parse({"psi_bar": -1.0})
    with pytest.raises(ConfigError, match=r"min_feature_rows=20 .*set min_feature_rows >= 50 or lower bins"):
        DriftConfig.parse({"min_feature_rows": 20})
    with pytest.raises(ConfigError, match="did you mean 'psi_bar'"):
        DriftConfig.parse({"psi_bars": 0.2})
    assert DriftConfig.parse({"psi_bar": 0.1}).psi_bar == 0.1
