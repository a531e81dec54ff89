"""Each symbol's newest-bar features (``tradeloop.features.latest``) against ``compute_features``
over the whole window, on the bundled real sample, for every feature a model may read."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from tradeloop.features import MODEL_SPECS, compute_features, feature_spec
from tradeloop.features.latest import COMPILED, latest_features
from tradeloop.features.pipeline import FeatureSpec

H4 = 4 * 3600 * 1000
NAMES = [s.name for s in MODEL_SPECS]


@pytest.fixture(scope="module")
def market(btc_4h: pl.DataFrame, eth_4h: pl.DataFrame) -> pl.DataFrame:
    """Real 4h candles under several symbols: BTC and ETH as they are, BTC's and ETH's prices
    a few bars later under two more names (a symbol per series, each with the sample's gaps)."""
    btc_late = btc_4h.with_columns(pl.col("ts") + 7 * H4)
    eth_late = eth_4h.with_columns(pl.col("ts") + 3 * H4)
    parts = [("BTC-USD", btc_4h), ("ETH-USD", eth_4h), ("B7-USD", btc_late), ("E3-USD", eth_late)]
    frame = pl.concat([f.with_columns(symbol=pl.lit(name)) for name, f in parts], how="diagonal")
    return frame.select("symbol", *btc_4h.columns)


def window_at(market: pl.DataFrame, ts: int, bars: int) -> pl.DataFrame:
    """The last ``bars`` rows of every symbol up to ``ts``, symbols one after the other, and
    NEW-USD, listed 12 bars before ``ts``: shorter than most tails (ETH's rows one bar later,
    so that no other symbol has its values at ``ts``)."""
    window = market.filter(pl.col("ts") <= ts).group_by("symbol", maintain_order=True).tail(bars)
    young = window.filter(pl.col("symbol") == "ETH-USD").tail(13).head(12)
    return pl.concat([window, young.with_columns(symbol=pl.lit("NEW-USD"), ts=pl.col("ts") + H4)])


def assert_rows_equal(got: pl.DataFrame, ref: pl.DataFrame, names: list[str]) -> None:
    assert got["symbol"].to_list() == ref["symbol"].to_list()
    for name in names:
        assert got[name].is_null().to_list() == ref[name].is_null().to_list(), name
        a, b = got[name].to_numpy(), ref[name].to_numpy()
        both = ~np.isnan(b)
        assert np.array_equal(np.isnan(a), np.isnan(b)), name
        # a z-score's division amplifies the running sums' rounding (tradeloop.features.memory)
        np.testing.assert_allclose(a[both], b[both], rtol=1e-9, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("end", [20_000, 20_600])
@pytest.mark.parametrize("order", ["by symbol", "by time"])
def test_latest_features_equal_the_window_computation(market: pl.DataFrame, btc_4h, end: int, order: str) -> None:
    ts = int(btc_4h["ts"][end])
    window = window_at(market, ts, 400)
    if order == "by time":  # symbols interleaved, time order within each
        window = window.sort("ts", "symbol")
    got = latest_features(window, MODEL_SPECS, ts=ts).sort("symbol")
    ref = compute_features(window.sort("symbol", "ts"), MODEL_SPECS).filter(pl.col("ts") == ts)
    ref = ref.select("symbol", *NAMES).sort("symbol")
    assert got.height >= 3 and "NEW-USD" in got["symbol"].to_list()  # the young symbol is decided too
    assert_rows_equal(got, ref, NAMES)


def test_the_young_symbol_has_its_short_features_and_nulls_for_the_long_ones(market: pl.DataFrame, btc_4h) -> None:
    ts = int(btc_4h["ts"][20_000])
    got = latest_features(window_at(market, ts, 400), MODEL_SPECS, ts=ts).filter(pl.col("symbol") == "NEW-USD")
    assert got["ret_4"][0] is not None and got["sma_10"][0] is not None  # 5 and 10 rows: within its 12
    assert got["vol_20"][0] is None and got["rsi_14"][0] is None  # 21 rows; 14 differences


def test_a_symbol_without_a_candle_at_ts_has_no_row(market: pl.DataFrame, btc_4h) -> None:
    ts = int(btc_4h["ts"][20_000])
    window = window_at(market, ts, 400).filter(~((pl.col("symbol") == "ETH-USD") & (pl.col("ts") == ts)))
    got = latest_features(window, MODEL_SPECS, ts=ts)
    assert "ETH-USD" not in got["symbol"].to_list() and "BTC-USD" in got["symbol"].to_list()


def test_bars_after_ts_are_ignored(market: pl.DataFrame, btc_4h) -> None:
    ts, later = int(btc_4h["ts"][20_000]), int(btc_4h["ts"][20_010])
    listed = ~pl.col("symbol").is_in(["NEW-USD"])  # its 12 rows differ between the two windows
    upto = latest_features(window_at(market, ts, 400), MODEL_SPECS, ts=ts).filter(listed)
    beyond = latest_features(window_at(market, later, 410), MODEL_SPECS, ts=ts).filter(listed)
    assert beyond.height == upto.height >= 3
    assert_rows_equal(beyond, upto, NAMES)


def test_the_compiled_recursions_serve_only_the_default_specs(market: pl.DataFrame, btc_4h) -> None:
    """A feature named like a compiled one but built differently goes through its own expression."""
    ts = int(btc_4h["ts"][20_000])
    window = window_at(market, ts, 400)
    impostor = FeatureSpec("rsi_14", lambda: pl.col("close") * 2.0, feature_spec("rsi_14").memory)
    got = latest_features(window, [impostor], ts=ts).sort("symbol")
    closes = window.filter(pl.col("ts") == ts).sort("symbol")["close"]
    assert set(COMPILED) == {"ema_20", "rsi_14", "atr_14"}
    np.testing.assert_allclose(got["rsi_14"].to_numpy(), closes.to_numpy() * 2.0)
