"""Correlation-aware sizing (tradeloop.risk.sizing): cluster caps, the volatility target, and
no look-ahead in the kernel's size_frac matrix."""

import numpy as np
import pytest
from pydantic import ValidationError
from sklearn.covariance import LedoitWolf

from tradeloop.risk import SizingConfig, returns_from_closes, size_frac_matrix, target_weights

PPY = 365.0


def pair_and_one(n: int = 500, seed: int = 7, c_vol: float = 0.03) -> np.ndarray:
    """A, B = 2 * A (perfectly correlated, twice as volatile) and an independent C."""
    rng = np.random.default_rng(seed)
    a = rng.normal(0.0, 0.02, n)
    c = rng.normal(0.0, c_vol, n)
    return np.column_stack([a, 2.0 * a, c])


def reference_vol(returns: np.ndarray, w: np.ndarray) -> float:
    """Ex-ante annual volatility by the definition: sklearn's Ledoit-Wolf covariance, annualised."""
    cov = LedoitWolf().fit(returns).covariance_ * PPY
    return float(np.sqrt(w @ cov @ w))


def test_the_correlated_pair_shares_one_cluster_cap() -> None:
    r = pair_and_one(c_vol=0.05)
    loose = target_weights(r, SizingConfig(target_vol=0.25, periods_per_year=PPY, cluster_cap=1.0))
    assert loose.weights[:2].sum() > 0.3  # without the cap the pair would take more than 0.25
    sized = target_weights(r, SizingConfig(target_vol=0.25, periods_per_year=PPY, cluster_cap=0.25))
    w = sized.weights
    assert sized.clusters[0] == sized.clusters[1] != sized.clusters[2]
    assert w[0] + w[1] == pytest.approx(0.25, rel=1e-9)  # at the cap, never above it
    assert w[2] <= 0.25 and w[2] > loose.weights[2]  # C, a cluster of one, takes up the rest
    assert reference_vol(r, w) == pytest.approx(0.25, rel=1e-9)  # and the target is still hit
    # a tighter cap leaves the target out of reach: every cluster at its cap, the vol below target
    tight = target_weights(r, SizingConfig(target_vol=0.25, periods_per_year=PPY, cluster_cap=0.2)).weights
    assert tight[:2].sum() == pytest.approx(0.2, rel=1e-9) and tight[2] == pytest.approx(0.2, rel=1e-9)
    assert reference_vol(r, tight) < 0.25


def test_volatility_hits_the_target_when_no_cap_binds() -> None:
    r = pair_and_one()
    sized = target_weights(r, SizingConfig(target_vol=0.08, periods_per_year=PPY, cluster_cap=0.5))
    w = sized.weights
    assert reference_vol(r, w) == pytest.approx(0.08, rel=1e-9)
    assert sized.volatility == pytest.approx(0.08, rel=1e-9)
    # shape (rule 4): inverse vol, the pair sharing one symbol's budget: w_i = s / (sigma_i * |cluster|)
    sigma = np.sqrt(np.diag(LedoitWolf().fit(r).covariance_))
    assert w[0] * sigma[0] * 2 == pytest.approx(w[1] * sigma[1] * 2, rel=1e-9)
    assert w[0] * sigma[0] * 2 == pytest.approx(w[2] * sigma[2], rel=1e-9)


def test_a_symbol_at_its_cap_leaves_the_rest_to_the_others() -> None:
    rng = np.random.default_rng(3)
    r = np.column_stack([rng.normal(0, 0.005, 400), rng.normal(0, 0.03, 400)])  # a calm one, a wild one
    cfg = SizingConfig(target_vol=0.15, periods_per_year=PPY, max_weight=0.4, cluster_cap=1.0)
    w = target_weights(r, cfg).weights
    assert w[0] == pytest.approx(0.4, rel=1e-12)  # inverse vol would give the calm one most
    assert reference_vol(r, w) == pytest.approx(0.15, rel=1e-9)  # the wild one grew to hit the target


def test_gross_cap_stops_an_unreachable_target() -> None:
    r = pair_and_one()
    cfg = SizingConfig(target_vol=5.0, periods_per_year=PPY, cluster_cap=1.0, max_weight=0.8, gross_cap=1.0)
    w = target_weights(r, cfg).weights
    assert w.sum() == pytest.approx(1.0, rel=1e-9) and (w <= 0.8 + 1e-12).all()
    assert reference_vol(r, w) < 5.0


def test_missing_data_and_unwanted_symbols_get_nothing() -> None:
    r = pair_and_one(n=200)
    r[:190, 2] = np.nan  # C has 10 returns: fewer than min_obs
    cfg = SizingConfig(target_vol=0.1, periods_per_year=PPY, min_obs=20)
    sized = target_weights(r, cfg)
    assert sized.weights[2] == 0.0 and sized.weights[:2].sum() > 0 and list(sized.sized) == [0, 1]
    only_c = target_weights(pair_and_one(n=200), cfg, active=np.array([False, False, True]))
    assert only_c.weights[0] == only_c.weights[1] == 0.0 and only_c.weights[2] > 0
    flat = target_weights(np.zeros((50, 2)), cfg)  # returns that never move: nothing to size
    assert (flat.weights == 0.0).all()


def test_size_frac_matrix_has_no_look_ahead() -> None:
    rng = np.random.default_rng(11)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0, 0.02, (300, 3)), axis=0))
    close[40:60, 1] = np.nan  # a gap
    cfg = SizingConfig(target_vol=0.3, periods_per_year=PPY, window=60, rebalance_every=7, min_obs=20)
    frac = size_frac_matrix(returns_from_closes(close), cfg)
    assert frac.shape == (300, 3)
    assert (frac[:59] == 0.0).all() and (frac[59] > 0).any()  # the first full window ends at row 59
    assert (frac[59:66] == frac[59]).all() and not np.array_equal(frac[66], frac[59])  # held 7 bars
    t0 = 150
    changed = close.copy()
    changed[t0 + 1 :] *= np.exp(rng.normal(0, 0.1, (300 - t0 - 1, 3)))  # another future
    again = size_frac_matrix(returns_from_closes(changed), cfg)
    assert np.array_equal(again[: t0 + 1], frac[: t0 + 1])
    assert not np.array_equal(again[t0 + 1 :], frac[t0 + 1 :])


def test_returns_are_aligned_on_the_bar_they_are_known() -> None:
    close = np.array([[100.0, 10.0], [110.0, np.nan], [99.0, 12.0]])
    r = returns_from_closes(close)
    assert np.isnan(r[0]).all() and np.isnan(r[1, 1]) and np.isnan(r[2, 1])
    assert r[1, 0] == pytest.approx(np.log(1.1)) and r[2, 0] == pytest.approx(np.log(0.9))


def test_config_says_what_to_set() -> None:
    with pytest.raises(ValidationError, match="min_obs=50 exceeds window=30.*set min_obs <= 30"):
        SizingConfig(target_vol=0.2, periods_per_year=PPY, window=30, min_obs=50)
