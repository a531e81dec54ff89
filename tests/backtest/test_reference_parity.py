"""The compiled engine agrees with the plain numpy references on real candles."""

import numpy as np
import polars as pl
import pytest

from tradeloop.backtest import BacktestConfig, backtest_strategy
from tradeloop.backtest.reference import single_symbol_reference, sma_cross_reference
from tradeloop.strategies import SmaCross, ThresholdRule
from tradeloop.strategies.signals import ENTRIES


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


# ------------------------------------------------------------ ATR stops and limit entries vs the reference
REF_CONFIGS = {
    "atr": dict(atr_stop=2.0, atr_trailing=3.0, slippage=0.0005),
    "atr+pct": dict(
        stop_loss=0.03,
        atr_stop=1.5,
        trailing_stop=0.05,
        atr_trailing=2.5,
        take_profit=0.08,
        fraction=0.5,
        atr_window=10,
    ),
    "limit": dict(
        entry_order="limit", limit_offset=0.002, limit_ttl_bars=3, maker_fee_rate=0.0002, atr_stop=1.5, atr_trailing=3.0
    ),
    "limit-touch": dict(
        entry_order="limit", limit_offset=0.0, stop_loss=0.04, take_profit=0.05, close_at_end=True, slippage=0.001
    ),
}


def _reference_kwargs(cfg: BacktestConfig) -> dict:
    return dict(
        init_cash=cfg.init_cash,
        fee=cfg.fee_rate,
        slippage=cfg.slippage,
        fraction=cfg.fraction,
        stop_loss=cfg.stop_loss,
        take_profit=cfg.take_profit,
        trailing_stop=cfg.trailing_stop,
        atr_stop=cfg.atr_stop,
        atr_trailing=cfg.atr_trailing,
        atr_window=cfg.atr_window,
        limit_offset=cfg.limit_offset if cfg.entry_order == "limit" else None,
        limit_ttl=cfg.limit_ttl_bars,
        maker_fee=cfg.maker_fee_rate,
        close_at_end=cfg.close_at_end,
    )


@pytest.mark.parametrize("name", ["coinbase__BTC-USD__4h", "coinbase__ETH-USD__4h", "coinbase__BTC-USD__1h"])
@pytest.mark.parametrize("config", REF_CONFIGS, ids=str)
@pytest.mark.parametrize("allow_short", [False, True], ids=["long", "long-short"])
def test_atr_stops_and_limit_entries_match_reference(name: str, config: str, allow_short: bool) -> None:
    from conftest import sample

    candles = sample(name).with_columns(symbol=pl.lit("X"))
    strategy = SmaCross(fast=5, slow=20, rule=ThresholdRule(allow_short=allow_short))
    cfg = BacktestConfig(**REF_CONFIGS[config])
    result = backtest_strategy(strategy, candles, cfg, timeframe=name.split("__")[2])
    signal = strategy.signals(candles, by="symbol")["signal"].to_numpy()
    cols = [candles[c].to_numpy() for c in ("open", "high", "low", "close")]
    ref, ref_equity = single_symbol_reference(*cols, signal, **_reference_kwargs(cfg))

    ts = candles["ts"].to_numpy()
    got = result.trades.sort("entry_ts")
    assert got.height == len(ref) > 20
    assert got["side"].to_list() == [r.side for r in ref]
    assert got["entry_ts"].to_list() == [ts[r.entry_bar] for r in ref]
    assert got["exit_ts"].to_list() == [ts[r.exit_bar] for r in ref]
    assert got["exit_reason"].to_list() == [r.reason for r in ref]
    for col, attr in [("qty", "qty"), ("entry_price", "entry_price"), ("exit_price", "exit_price"), ("fees", "fees")]:
        np.testing.assert_allclose(got[col].to_numpy(), [getattr(r, attr) for r in ref], rtol=1e-9)
    np.testing.assert_allclose(result.equity["equity"].to_numpy(), ref_equity, rtol=1e-9)
    # the features under test did act on this history
    reasons = set(got["exit_reason"].to_list())
    if cfg.atr_stop:
        assert "stop_loss" in reasons
    if cfg.atr_trailing:
        assert "trailing_stop" in reasons
    if cfg.entry_order == "limit":
        entries = int(np.count_nonzero(signal & ENTRIES))
        assert got.height < entries  # some limit orders expired unfilled
        close, decided = candles["close"].to_numpy(), np.flatnonzero(signal & ENTRIES)
        for r in ref:  # every entry: within its time to live, on a bar that traded through, at its limit or better
            d = decided[decided < r.entry_bar][-1]
            assert r.entry_bar - d <= cfg.limit_ttl_bars
            if r.side == "long":
                limit = close[d] * (1 - cfg.limit_offset)
                assert cols[2][r.entry_bar] < limit and r.entry_price <= limit
            else:
                limit = close[d] * (1 + cfg.limit_offset)
                assert cols[1][r.entry_bar] > limit and r.entry_price >= limit
