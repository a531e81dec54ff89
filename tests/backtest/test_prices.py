"""PriceArrays of one symbol (no join) equal the many-symbol grid path's arrays for it."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from tests.conftest import sample
from tradeloop.backtest.prices import PriceArrays
from tradeloop.errors import BacktestError
from tradeloop.strategies import SmaCross


def test_one_symbol_arrays_equal_the_grid_paths_on_real_candles() -> None:
    candles = sample("coinbase__BTC-USD__4h").with_columns(symbol=pl.lit("BTC-USD"))
    signals = SmaCross().signals(candles, by="symbol")
    signals = signals.with_columns(close=pl.when(pl.int_range(pl.len()) == 7).then(None).otherwise("close"))
    one = PriceArrays.from_frame(signals.sample(fraction=1.0, shuffle=True, seed=1))  # any row order
    grid = PriceArrays.from_frame(pl.concat([signals, signals.with_columns(symbol=pl.lit("ZZZ"))]))
    assert one.symbols == ("BTC-USD",) and np.count_nonzero(one.signal) > 0 and np.isnan(one.close[7, 0])
    np.testing.assert_array_equal(one.ts, grid.ts)
    for name in ("open", "high", "low", "close", "signal"):
        got, want = getattr(one, name), getattr(grid, name)[:, :1]
        assert got.dtype == want.dtype and got.shape == want.shape and got.flags.c_contiguous
        np.testing.assert_array_equal(got, want)


def test_one_symbol_with_a_ts_twice_is_refused() -> None:
    candles = SmaCross().signals(sample("coinbase__BTC-USD__4h").with_columns(symbol=pl.lit("X")), by="symbol")
    with pytest.raises(BacktestError, match="two candles for one"):
        PriceArrays.from_frame(pl.concat([candles, candles.tail(1)]))
