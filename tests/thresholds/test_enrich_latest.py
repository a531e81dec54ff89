"""``enrich_latest`` (what the live engine decides on) against ``enrich`` over the whole window,
filtered to the bar: the same signals and, within rounding, the same score and features, for
every bundled strategy on the bundled real sample."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import polars as pl
import pytest

from tradeloop.features import MODEL_SPECS, feature_spec
from tradeloop.features import indicators as ind
from tradeloop.features.memory import Memory
from tradeloop.strategies import STRATEGIES, Strategy, get_strategy
from tradeloop.strategies.rules import ThresholdRule
from tradeloop.thresholds import decide
from tradeloop.thresholds.decide import enrich, enrich_latest

H4 = 4 * 3600 * 1000
FEATURES = ("score", *(s.name for s in MODEL_SPECS))


class RsiTilt(Strategy):
    """A score with infinite memory (Wilder's RSI around 50): evaluated per symbol."""

    name: ClassVar[str] = "rsi_tilt"
    rule: ThresholdRule = ThresholdRule(entry=5.0, exit=-5.0)

    def score_expr(self) -> pl.Expr:
        return ind.rsi(14) - 50.0

    @property
    def score_memory(self) -> Memory:
        return feature_spec("rsi_14").memory


@pytest.fixture(scope="module")
def market(btc_4h: pl.DataFrame, eth_4h: pl.DataFrame) -> pl.DataFrame:
    """BTC and ETH 4h, and their prices a few bars later under two more names."""
    parts = {
        "BTC-USD": btc_4h,
        "ETH-USD": eth_4h,
        "B5-USD": btc_4h.with_columns(pl.col("ts") + 5 * H4),
        "E2-USD": eth_4h.with_columns(pl.col("ts") + 2 * H4),
    }
    return pl.concat([f.with_columns(symbol=pl.lit(name)) for name, f in parts.items()]).sort("symbol", "ts")


STRATEGY_CASES = [*(get_strategy(name) for name in STRATEGIES), RsiTilt()]


def window_at(market: pl.DataFrame, ts: int, bars: int = 400) -> pl.DataFrame:
    """The last ``bars`` rows of every symbol up to ``ts``, and NEW-USD, a symbol younger than
    most strategies' warm-up: 25 rows of B5-USD one bar later (no other symbol's values at
    ``ts``: an exact tie in a cross-sectional rank would rest on the last bit of a rounding)."""
    window = market.filter(pl.col("ts") <= ts).group_by("symbol", maintain_order=True).tail(bars)
    young = window.filter(pl.col("symbol") == "B5-USD").tail(26).head(25)
    return pl.concat([window, young.with_columns(symbol=pl.lit("NEW-USD"), ts=pl.col("ts") + H4)])


def assert_same(got: pl.DataFrame, ref: pl.DataFrame, names: tuple[str, ...]) -> None:
    assert got["symbol"].to_list() == ref["symbol"].to_list()
    assert got["signal"].to_list() == ref["signal"].to_list()
    for name in names:
        assert got[name].is_null().to_list() == ref[name].is_null().to_list(), name
        np.testing.assert_allclose(got[name].to_numpy(), ref[name].to_numpy(), rtol=1e-9, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("settle", [decide.SETTLE_BARS, 2], ids=["settle-default", "settle-2"])
@pytest.mark.parametrize("strategy", STRATEGY_CASES, ids=lambda s: s.name)
def test_every_bar_decides_as_the_window_enrichment(
    market: pl.DataFrame, btc_4h, strategy: Strategy, settle: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a short look-back for the rule's sides (2 bars) most decisions read the whole window."""
    monkeypatch.setattr(decide, "SETTLE_BARS", settle)
    fired = 0
    for end in range(19_000, 19_300):  # 300 consecutive bars: entries and exits of every strategy
        ts = int(btc_4h["ts"][end])
        window = window_at(market, ts)
        got = enrich_latest(window, strategy, ("score",), ts=ts).sort("symbol")
        ref = enrich(window, strategy, ()).filter(pl.col("ts") == ts).sort("symbol")
        assert_same(got, ref, ("score",))
        fired += int((ref["signal"] != 0).sum())
    assert fired >= 2  # the comparison saw signals, not only quiet bars


@pytest.mark.parametrize("strategy", [get_strategy("sma_cross"), RsiTilt()], ids=lambda s: s.name)
def test_every_model_feature_equals_the_window_enrichment(market: pl.DataFrame, btc_4h, strategy: Strategy) -> None:
    for end in range(19_000, 19_400, 50):
        ts = int(btc_4h["ts"][end])
        window = window_at(market, ts)
        got = enrich_latest(window, strategy, FEATURES, ts=ts).sort("symbol")
        ref = enrich(window, strategy, FEATURES).filter(pl.col("ts") == ts).sort("symbol")
        assert_same(got, ref, FEATURES)


def test_a_window_in_time_order_decides_the_same(market: pl.DataFrame, btc_4h) -> None:
    ts = int(btc_4h["ts"][19_100])
    window = window_at(market, ts)
    strategy = get_strategy("sma_cross")
    by_symbol = enrich_latest(window, strategy, FEATURES, ts=ts).sort("symbol")
    by_time = enrich_latest(window.sort("ts", "symbol"), strategy, FEATURES, ts=ts).sort("symbol")
    assert by_symbol.select("symbol", "signal", *FEATURES).equals(by_time.select("symbol", "signal", *FEATURES))


def test_one_series_without_a_symbol_column(btc_4h: pl.DataFrame) -> None:
    ts = int(btc_4h["ts"][19_100])
    window = btc_4h.filter(pl.col("ts") <= ts).tail(400)
    got = enrich_latest(window, get_strategy("momentum"), FEATURES, ts=ts)
    ref = enrich(window, get_strategy("momentum"), FEATURES).filter(pl.col("ts") == ts)
    assert got.height == 1 and got["signal"].to_list() == ref["signal"].to_list()
    np.testing.assert_allclose(got["score"].to_numpy(), ref["score"].to_numpy(), rtol=1e-12)


def test_a_bar_no_symbol_has_decides_nothing(market: pl.DataFrame, btc_4h) -> None:
    """A bar with no candle (every source of every symbol down) is no error: no row, as enrich."""
    ts = int(btc_4h["ts"][19_100])
    later = ts + H4 // 2  # no symbol has a candle there
    for window in (window_at(market, ts), window_at(market, ts).clear()):
        for strategy in (get_strategy("sma_cross"), RsiTilt()):
            got = enrich_latest(window, strategy, FEATURES, ts=later)
            ref = enrich(window, strategy, FEATURES).filter(pl.col("ts") == later)
            assert got.is_empty() and ref.is_empty()
            assert set(ref.columns) <= set(got.columns)


def test_flat_prices_score_zero_whatever_trades_beside_them(market: pl.DataFrame, btc_4h) -> None:
    """A flat window's z-score is 0 (indicators.zscore), not the 0/0 of what rounding leaves in
    the running sums, so a flat symbol decides alike next to any other and as enrich does."""
    ts = int(btc_4h["ts"][19_100])
    window = window_at(market, ts)
    flat = window.filter(pl.col("symbol") == "ETH-USD").with_columns(
        pl.when(pl.int_range(pl.len()) >= 340).then(pl.lit(1234.5)).otherwise(pl.col(c)).alias(c)
        for c in ("open", "high", "low", "close")
    )
    strategy = get_strategy("mean_reversion")
    rows = []
    for others in (["BTC-USD"], ["E2-USD", "B5-USD"], []):
        frame = pl.concat([window.filter(pl.col("symbol").is_in(others)), flat])
        got = enrich_latest(frame, strategy, FEATURES, ts=ts).filter(pl.col("symbol") == "ETH-USD")
        ref = enrich(frame, strategy, FEATURES).filter((pl.col("ts") == ts) & (pl.col("symbol") == "ETH-USD"))
        assert_same(got, ref, FEATURES)
        rows.append(got.select("signal", "score", "zscore_20"))
    assert rows[0]["score"][0] == 0.0 and rows[0]["zscore_20"][0] == 0.0
    assert rows[0].equals(rows[1]) and rows[1].equals(rows[2])


def test_a_null_price_takes_the_expression_route_for_the_recursions(market: pl.DataFrame, btc_4h) -> None:
    """polars skips a null in an EWM and in max_horizontal; the compiled loops would not."""
    ts = int(btc_4h["ts"][19_100])
    window = window_at(market, ts).with_row_index("i")
    holed = window.with_columns(
        pl.when(pl.col("i") == 57).then(None).otherwise(pl.col("high")).alias("high"),
        pl.when(pl.col("i") == 380).then(None).otherwise(pl.col("close")).alias("close"),
    ).drop("i")
    names = ("ema_20", "rsi_14", "atr_14")
    got = enrich_latest(holed, get_strategy("sma_cross"), names, ts=ts).sort("symbol")
    ref = enrich(holed, get_strategy("sma_cross"), names).filter(pl.col("ts") == ts).sort("symbol")
    assert_same(got, ref, names)
