"""The compiled fast paths must give exactly the polars path's signals (the definition)."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from tests.conftest import SAMPLE
from tradeloop.backtest import BacktestConfig, PriceArrays, simulate_arrays
from tradeloop.strategies import Breakout, Momentum, SmaCross, ThresholdRule
from tradeloop.strategies.compiled import _sma_ratio_column, sma_ratio_signals, sma_ratio_signals_serial


def wide_closes() -> tuple[np.ndarray, list[np.ndarray]]:
    """Every bundled sample's closes side by side on the union of their timestamps (NaN where
    a series has no candle), plus each series' own closes."""
    frames = [pl.read_parquet(path).select("ts", "close") for path in sorted(SAMPLE.glob("*.parquet"))]
    grid = pl.concat([f.select("ts") for f in frames]).unique().sort("ts")
    wide = np.column_stack([grid.join(f, on="ts", how="left")["close"].to_numpy() for f in frames])
    return np.ascontiguousarray(wide), [f["close"].to_numpy() for f in frames]


@pytest.mark.parametrize(
    "strategy",
    [
        SmaCross(fast=10, slow=30),
        SmaCross(fast=3, slow=50, rule=ThresholdRule(entry=0.002, exit=-0.001, allow_short=True)),
        SmaCross(fast=1, slow=2, rule=ThresholdRule(allow_short=True)),
    ],
    ids=str,
)
def test_sma_cross_compiled_signals_equal_polars_on_real_data(strategy: SmaCross) -> None:
    wide, series = wide_closes()
    signal = strategy.wide_signals({"close": wide})
    for j, closes in enumerate(series):
        present = ~np.isnan(wide[:, j])
        expected = strategy.signals(pl.DataFrame({"close": closes}), by=None)["signal"].to_numpy()
        assert np.count_nonzero(expected) > 0
        np.testing.assert_array_equal(signal[present, j], expected)
        assert not signal[~present, j].any()


def test_compiled_scores_track_polars_and_ties_fire_nothing() -> None:
    rng = np.random.default_rng(3)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, 50_000)))
    close[20_000:20_100] = close[20_000]  # flat: fast == slow, an exact tie
    strategy = SmaCross(fast=10, slow=30)
    lo, hi = strategy.rule.bounds()
    signal, score = sma_ratio_signals(close.reshape(-1, 1), 10, 30, lo, hi, False, True)
    expected = strategy.signals(pl.DataFrame({"close": close}), by=None)
    reference = expected["score"].fill_null(np.nan).to_numpy()
    np.testing.assert_allclose(score[:, 0], reference, rtol=0, atol=1e-12)
    assert np.isnan(score[:29, 0]).all() and not np.isnan(score[29:, 0]).any()
    np.testing.assert_array_equal(signal[:, 0], expected["signal"].to_numpy())
    assert not signal[20_040:20_100, 0].any()


def test_serial_and_threaded_compiled_signals_are_identical_on_real_data() -> None:
    """One symbol or a small input runs on the calling thread (``sma_signals``): the same
    signals and scores, bit for bit, as the blocks on threads, gaps included."""
    wide, _ = wide_closes()
    lo, hi = ThresholdRule(entry=0.002, exit=-0.001).bounds()
    threaded = sma_ratio_signals(wide, 7, 40, lo, hi, True, True)
    serial = sma_ratio_signals_serial(wide, 7, 40, lo, hi, True, True)
    assert wide.shape[1] > 1 and np.isnan(wide).any() and np.count_nonzero(threaded[0]) > 0
    np.testing.assert_array_equal(serial[0], threaded[0])
    np.testing.assert_array_equal(serial[1], threaded[1])
    one = sma_ratio_signals_serial(np.ascontiguousarray(wide[:, 2:3]), 7, 40, lo, hi, True, True)
    np.testing.assert_array_equal(one[0][:, 0], threaded[0][:, 2])


@pytest.mark.parametrize(("fast", "slow"), [(10, 30), (1, 2), (7, 40), (50, 1500)])
def test_one_gapless_series_takes_the_column_loop_with_the_blocks_numbers(fast: int, slow: int) -> None:
    """One symbol runs ``_sma_ratio_column`` (no ring of closes) unless it has a gap: the same
    signals and scores, bit for bit, as the ring-buffer block (two symbols run that), on every
    bundled series; a series with a gap falls back to the block from its start."""
    _, series = wide_closes()
    lo, hi = ThresholdRule(entry=0.002, exit=-0.001).bounds()
    gappy = series[0].copy()
    gappy[len(gappy) // 2 :: 997] = np.nan
    fired = 0
    for closes in [*series, gappy]:
        one = sma_ratio_signals_serial(np.ascontiguousarray(closes.reshape(-1, 1)), fast, slow, lo, hi, True, True)
        two = sma_ratio_signals_serial(
            np.ascontiguousarray(np.column_stack([closes, closes])), fast, slow, lo, hi, True, True
        )
        fired += np.count_nonzero(two[0][:, 0])
        np.testing.assert_array_equal(one[0][:, 0], two[0][:, 0])
        np.testing.assert_array_equal(one[1][:, 0], two[1][:, 0])
        signal_only, no_score = sma_ratio_signals_serial(
            np.ascontiguousarray(closes.reshape(-1, 1)), fast, slow, lo, hi, True, False
        )
        np.testing.assert_array_equal(signal_only, one[0])
        assert no_score.size == 0
    assert fired > 0
    for closes, gapless in ((series[0], True), (gappy, False)):
        signal = np.zeros(closes.size, dtype=np.int8)
        assert _sma_ratio_column(closes, fast, slow, lo, hi, True, False, signal, np.empty(0)) is gapless


def test_a_zero_window_scores_as_polars_divides() -> None:
    """Closes at zero (a delisted coin's last prints) make the windows' sums zero: no exception,
    the score and signals of polars' division (0 / 0 is NaN: nothing fires), alone or beside a
    live symbol."""
    _, series = wide_closes()
    first, second = sorted(series, key=len)[-2:]
    closes = first[:3000].copy()
    closes[1000:1100] = 0.0
    strategy = SmaCross(fast=10, slow=30, rule=ThresholdRule(allow_short=True))
    expected = strategy.signals(pl.DataFrame({"close": closes}), by=None)["signal"].to_numpy()
    one = strategy.wide_signals({"close": closes.reshape(-1, 1)})
    two = strategy.wide_signals({"close": np.column_stack([closes, second[:3000]])})
    np.testing.assert_array_equal(one[:, 0], expected)
    np.testing.assert_array_equal(two[:, 0], expected)


@pytest.mark.parametrize("strategy", [Momentum(lookback=24), Breakout()], ids=str)
def test_strategies_without_compiled_path_use_polars_per_symbol(strategy) -> None:
    frames = [pl.read_parquet(SAMPLE / f"coinbase__{s}__4h.parquet") for s in ("BTC-USD", "ETH-USD")]
    n = min(f.height for f in frames)
    columns = {c: np.column_stack([f[c].to_numpy()[:n] for f in frames]) for c in ("high", "low", "close")}
    columns["close"][5, 1] = np.nan  # ETH has no candle on bar 5
    signal = strategy.wide_signals(columns)
    for j, frame in enumerate(frames):
        part = frame.head(n).filter(pl.int_range(pl.len()) != 5) if j == 1 else frame.head(n)
        expected = strategy.signals(part, by=None)["signal"].to_numpy()
        got = np.delete(signal[:, j], 5) if j == 1 else signal[:, j]
        np.testing.assert_array_equal(got, expected)
    assert signal[5, 1] == 0


def test_independent_portfolios_on_threads_equal_one_pass() -> None:
    wide, _ = wide_closes()
    wide = wide[~np.isnan(wide).all(axis=1)]
    signal = SmaCross(fast=5, slow=20).wide_signals({"close": wide})
    prices = PriceArrays(
        ts=np.arange(wide.shape[0]),
        symbols=tuple(f"s{j}" for j in range(wide.shape[1])),
        open=wide,
        high=wide,
        low=wide,
        close=wide,
        signal=signal,
    )
    config = BacktestConfig(cash_sharing=False, stop_loss=0.02, slippage=0.001)
    one = simulate_arrays(prices, config, threads=1)
    many = simulate_arrays(prices, config, threads=3)
    np.testing.assert_array_equal(one[0], many[0])
    order = np.lexsort((one[1][:, 2], one[1][:, 0]))  # by symbol, then entry bar
    order_many = np.lexsort((many[1][:, 2], many[1][:, 0]))
    np.testing.assert_array_equal(one[1][order], many[1][order_many])
    assert len(one[1]) > 100
    for i in (2, 3, 4):
        np.testing.assert_array_equal(one[i], many[i])


@pytest.mark.parametrize(
    "strategy", [SmaCross(fast=5, slow=20, rule=ThresholdRule(allow_short=True)), Momentum(lookback=24)], ids=str
)
def test_grouped_rule_equals_the_rule_per_symbol(strategy) -> None:
    """Strategy.signals(by="symbol") runs the rule once over all symbols (interleaved rows):
    it must equal running it on each symbol alone."""
    frames = {s: pl.read_parquet(SAMPLE / f"coinbase__{s}__4h.parquet") for s in ("BTC-USD", "ETH-USD")}
    mixed = pl.concat([f.with_columns(symbol=pl.lit(s)) for s, f in frames.items()]).sort("ts", "symbol")
    grouped = strategy.signals(mixed, by="symbol")
    for symbol, frame in frames.items():
        alone = strategy.signals(frame, by=None)["signal"].to_numpy()
        assert np.count_nonzero(alone) > 10
        np.testing.assert_array_equal(grouped.filter(pl.col("symbol") == symbol)["signal"].to_numpy(), alone)
