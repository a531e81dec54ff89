"""Feature and score memories, held to their expressions on the bundled real sample: the
derived warm-up is the null count, and a window of ``exact_bars`` gives the full-history value."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from tradeloop.errors import ConfigError
from tradeloop.features import DEFAULT_FEATURES, TOLERANCE, Memory, compute_features, feature_spec
from tradeloop.features.memory import ewm_bars
from tradeloop.strategies import STRATEGIES, get_strategy

ENDS = (3000, 9000, 20000)  # bars of history at which a window's last value is compared


def test_ewm_bars_is_the_first_k_whose_decay_is_below_the_tolerance() -> None:
    for alpha in (1 / 14, 2 / 21, 0.5, 0.01):
        k = ewm_bars(alpha)
        assert (1 - alpha) ** k <= TOLERANCE < (1 - alpha) ** (k - 1)
    assert ewm_bars(1 / 14) == math.ceil(math.log(1e-12) / math.log(13 / 14)) == 373
    assert ewm_bars(1.0) == 0


def test_derived_numbers_of_the_default_features() -> None:
    numbers = {s.name: (s.warmup, s.exact_bars()) for s in DEFAULT_FEATURES}
    assert numbers["sma_30"] == (29, 30) and numbers["vol_20"] == (20, 21) and numbers["ret_1"] == (1, 2)
    # Wilder's RSI: the first close difference at bar 1, then 373 bars to forget the seed
    assert numbers["rsi_14"] == (14, 2 + 373)
    assert numbers["ema_20"] == (19, 1 + ewm_bars(2 / 21))
    assert numbers["atr_14"] == (13, 2 + 373)  # true range: the first bar has no previous close
    assert feature_spec("rsi_14").exact_bars(1e-6) == 2 + ewm_bars(1 / 14, 1e-6) < 375


@pytest.mark.parametrize("spec", DEFAULT_FEATURES, ids=lambda s: s.name)
def test_a_window_of_exact_bars_gives_the_full_history_value(spec, btc_4h: pl.DataFrame) -> None:
    full = compute_features(btc_4h, [spec], by=None)[spec.name].to_numpy()
    bars = spec.exact_bars()
    for end in ENDS:
        window = compute_features(btc_4h[end - bars : end], [spec], by=None)[spec.name].to_numpy()
        np.testing.assert_allclose(window[-1], full[end - 1], rtol=1e-9, err_msg=spec.name)
        if spec.memory.finite and bars > 1:  # one bar fewer: still warming up
            shorter = compute_features(btc_4h[end - bars + 1 : end], [spec], by=None)[spec.name]
            assert shorter[-1] is None, spec.name


@pytest.mark.parametrize("name", ["ema_20", "rsi_14", "atr_14"])
def test_exponential_features_remember_where_the_window_starts(name: str, btc_4h: pl.DataFrame) -> None:
    """Why the warm-up is computed: a window long enough for the value to be non-null is not
    long enough for it to be right."""
    spec = feature_spec(name)
    full = compute_features(btc_4h, [spec], by=None)[name].to_numpy()
    gaps = [
        abs(compute_features(btc_4h[end - 60 : end], [spec], by=None)[name][-1] / full[end - 1] - 1) for end in ENDS
    ]
    assert max(gaps) > 1e-6


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_strategy_scores_derive_their_warmup_and_window(name: str, btc_4h: pl.DataFrame) -> None:
    strategy = get_strategy(name)
    full = strategy.scores(btc_4h, by=None)["score"]
    assert full[: strategy.warmup_bars].null_count() == strategy.warmup_bars
    assert full[strategy.warmup_bars] is not None
    bars = strategy.score_memory.exact_bars()
    for end in ENDS:
        window = strategy.scores(btc_4h[end - bars : end], by=None)["score"]
        assert window[-1] == pytest.approx(full[end - 1], rel=1e-9, abs=1e-12)
        assert strategy.scores(btc_4h[end - bars + 1 : end], by=None)["score"][-1] is None


def test_memory_descriptions_are_validated() -> None:
    with pytest.raises(ConfigError, match="n=0"):
        Memory.bars(0)
    with pytest.raises(ConfigError, match="alpha=1.5"):
        Memory.bars(1).ewm(alpha=1.5)
    with pytest.raises(ConfigError, match="alpha or span"):
        Memory.bars(1).ewm(alpha=0.1, span=10)
    with pytest.raises(ConfigError, match="k=-1"):
        Memory.bars(1).shift(-1)
    with pytest.raises(ConfigError, match="'rsi_99' is unknown"):
        feature_spec("rsi_99")
    both = Memory.combine(Memory.bars(1), Memory.bars(3), nulls="all")
    assert (both.warmup, both.exact_bars()) == (0, 3)
    assert Memory.combine(Memory.bars(1), Memory.bars(3)).warmup == 2
