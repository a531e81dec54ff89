"""The compiled engine agrees with the plain numpy reference on real candles."""

import numpy as np
import polars as pl
import pytest

from tradeloop.backtest import BacktestConfig, backtest_strategy
from tradeloop.backtest.reference import sma_cross_reference
from tradeloop.strategies import SmaCross


@pytest.mark.parametrize(
    "name", ["coinbase__BTC-USD__1h", "coinbase__ETH-USD__4h", "bitstamp__BTC-USD__1m", "binanceus__ETH-USD__5m"]
)
@pytest.mark.parametrize(("fast", "slow"), [(10, 30), (5, 50)])
def test_sma_cross_matches_reference(name: str, fast: int, slow: int) -> None:
    from conftest import sample

    candles = sample(name)
    result = backtest_strategy(
        SmaCross(fast=fast, slow=slow), candles, BacktestConfig(fee_rate=0.001), timeframe=name.split("__")[2]
    )
    trades, final = sma_cross_reference(
        candles["open"].to_numpy(), candles["close"].to_numpy(), fast=fast, slow=slow, fee=0.001
    )
    assert result.trades.height == trades
    assert abs(result.final_equity / final - 1) < 1e-9


def test_vol_target_sizing_scales_with_volatility(btc_4h: pl.DataFrame) -> None:
    cfg = BacktestConfig(sizing="vol_target", vol_target=0.3, fraction=1.0)
    result = backtest_strategy(SmaCross(), btc_4h, cfg, timeframe="4h")
    notional = (result.trades["qty"] * result.trades["entry_price"]).to_numpy()
    full = backtest_strategy(SmaCross(), btc_4h, BacktestConfig(), timeframe="4h")
    assert result.trades.height == full.trades.height
    assert np.median(notional / full.trades["qty"] / full.trades["entry_price"]) < 1.0
