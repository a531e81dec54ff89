"""The documented fill, sizing and stop rules, on small hand-made candle sequences."""

import numpy as np
import polars as pl
import pytest

from tradeloop.backtest import BacktestConfig, run_backtest
from tradeloop.strategies.signals import ENTER_LONG, ENTER_SHORT, EXIT_LONG, EXIT_SHORT

H = 3_600_000


def bars(rows: list[tuple[float, float, float, float, int]], symbol: str = "X", start: int = 0) -> pl.DataFrame:
    """rows of (open, high, low, close, signal)."""
    o, h, lo, c = ([float(r[i]) for r in rows] for i in range(4))
    s = [int(r[4]) for r in rows]
    return pl.DataFrame(
        {
            "ts": [start + i * H for i in range(len(rows))],
            "symbol": [symbol] * len(rows),
            "open": o,
            "high": h,
            "low": lo,
            "close": c,
            "volume": [1.0] * len(rows),
            "signal": s,
        },
        schema_overrides={"signal": pl.Int8},
    )


def run(frame: pl.DataFrame, **cfg) -> tuple[pl.DataFrame, np.ndarray]:
    config = BacktestConfig(**{"fee_rate": 0.0, **cfg})
    result = run_backtest(frame, config, timeframe="1h")
    return result.trades, result.equity["equity"].to_numpy()


FLAT = (100.0, 100.0, 100.0, 100.0, 0)


def test_signal_fills_at_next_open_with_fees() -> None:
    frame = bars(
        [
            (100, 100, 100, 100, ENTER_LONG),
            (110, 112, 108, 111, 0),
            (120, 121, 119, 120, EXIT_LONG),
            (130, 131, 129, 130, 0),
        ]
    )
    trades, equity = run(frame, fee_rate=0.01, init_cash=1000.0)
    t = trades.row(0, named=True)
    qty = 1000.0 / (110 * 1.01)
    assert t["entry_price"] == 110 and t["exit_price"] == 130 and t["qty"] == pytest.approx(qty)
    assert t["fees"] == pytest.approx(qty * 110 * 0.01 + qty * 130 * 0.01)
    assert equity[0] == 1000.0  # nothing happens on the signal bar itself
    assert equity[-1] == pytest.approx(qty * 130 * 0.99)
    assert t["pnl"] == pytest.approx(equity[-1] - 1000.0)


def test_slippage_moves_fills_against_the_trader() -> None:
    frame = bars([(100, 100, 100, 100, ENTER_LONG), (100, 100, 100, 100, EXIT_LONG), (100, 100, 100, 100, 0)])
    trades, _ = run(frame, slippage=0.01)
    assert trades["entry_price"][0] == pytest.approx(101.0) and trades["exit_price"][0] == pytest.approx(99.0)


def test_stop_loss_and_take_profit_levels() -> None:
    enter = (100, 100, 100, 100, ENTER_LONG)
    sl = bars([enter, (100, 101, 98, 99, 0), (99, 99, 94, 95, 0), (95, 95, 95, 95, 0)])
    trades, _ = run(sl, stop_loss=0.05)
    assert trades["exit_reason"][0] == "stop_loss" and trades["exit_price"][0] == pytest.approx(95.0)
    assert trades["exit_ts"][0] == 2 * H
    tp = bars([enter, (100, 104, 99, 103, 0), (103, 111, 102, 109, 0), FLAT])
    trades, _ = run(tp, take_profit=0.10)
    assert trades["exit_reason"][0] == "take_profit" and trades["exit_price"][0] == pytest.approx(110.0)


def test_bar_touching_both_assumes_the_stop_first() -> None:
    frame = bars([(100, 100, 100, 100, ENTER_LONG), (100, 100, 100, 100, 0), (100, 112, 93, 100, 0), FLAT])
    trades, _ = run(frame, stop_loss=0.05, take_profit=0.10)
    assert trades["exit_reason"][0] == "stop_loss" and trades["exit_price"][0] == pytest.approx(95.0)


def test_gap_through_a_level_fills_at_the_open() -> None:
    enter = (100, 100, 100, 100, ENTER_LONG)
    down = bars([enter, (100, 100, 100, 100, 0), (90, 92, 88, 91, 0), FLAT])
    trades, _ = run(down, stop_loss=0.05)
    assert trades["exit_price"][0] == 90.0
    up = bars([enter, (100, 100, 100, 100, 0), (115, 116, 90, 100, 0), FLAT])
    trades, _ = run(up, stop_loss=0.05, take_profit=0.10)
    assert trades["exit_reason"][0] == "take_profit" and trades["exit_price"][0] == 115.0


def test_trailing_stop_follows_previous_highs_only() -> None:
    frame = bars(
        [
            (100, 100, 100, 100, ENTER_LONG),
            (100, 100, 100, 100, 0),  # entry at 100
            (100, 120, 100, 119, 0),  # peak -> 120 after this bar's check
            (119, 125, 113, 114, 0),  # stop 120*0.9=108 not hit; peak -> 125
            (114, 114, 110, 111, 0),  # stop 125*0.9=112.5 hit
            FLAT,
        ]
    )
    trades, _ = run(frame, trailing_stop=0.10)
    assert trades["exit_reason"][0] == "trailing_stop"
    assert trades["exit_price"][0] == pytest.approx(112.5) and trades["exit_ts"][0] == 4 * H


def test_short_and_reversal() -> None:
    frame = bars(
        [
            (100, 100, 100, 100, ENTER_SHORT),
            (100, 100, 100, 100, 0),  # short 100 at 100
            (80, 80, 80, 80, EXIT_SHORT | ENTER_LONG),
            (80, 80, 80, 80, 0),  # cover at 80, buy at 80
            (90, 90, 90, 90, 0),
        ]
    )
    trades, equity = run(frame, init_cash=10_000.0)
    assert trades["side"].to_list() == ["short", "long"]
    assert trades["pnl"][0] == pytest.approx(100 * 20)
    assert trades["exit_reason"].to_list() == ["signal", "open"]
    assert equity[-1] == pytest.approx(12_000 / 80 * 90)


def test_short_stop_loss_is_mirrored() -> None:
    frame = bars([(100, 100, 100, 100, ENTER_SHORT), (100, 100, 100, 100, 0), (100, 106, 99, 104, 0), FLAT])
    trades, _ = run(frame, stop_loss=0.05)
    assert trades["exit_reason"][0] == "stop_loss" and trades["exit_price"][0] == pytest.approx(105.0)


def test_shared_cash_and_fraction_sizing() -> None:
    a = bars([(100, 100, 100, 100, ENTER_LONG), (100, 100, 100, 100, 0), (100, 100, 100, 100, 0)], "A")
    b = bars([(50, 50, 50, 50, ENTER_LONG), (50, 50, 50, 50, 0), (50, 50, 50, 50, 0)], "B")
    trades, _ = run(pl.concat([a, b]), fraction=0.4, init_cash=1000.0)
    assert trades.sort("symbol")["qty"].to_list() == pytest.approx([4.0, 8.0])
    # fraction 0.8 each: the second entry only gets the cash that is left
    trades, _ = run(pl.concat([a, b]), fraction=0.8, init_cash=1000.0)
    assert trades.sort("symbol")["qty"].to_list() == pytest.approx([8.0, 4.0])
    trades, equity = run(pl.concat([a, b]), fraction=0.8, init_cash=1000.0, cash_sharing=False)
    assert trades.sort("symbol")["qty"].to_list() == pytest.approx([8.0, 16.0])


def test_missing_bar_defers_the_order() -> None:
    a = bars([(100, 100, 100, 100, ENTER_LONG), FLAT, (100, 100, 100, 100, 0)], "A")
    b = bars([(50, 50, 50, 50, ENTER_LONG), (50, 50, 50, 50, 0), (60, 60, 60, 60, 0)], "B").filter(pl.col("ts") != H)
    trades, _ = run(pl.concat([a, b]), fraction=0.5, init_cash=1000.0)
    b_trade = trades.filter(pl.col("symbol") == "B").row(0, named=True)
    assert b_trade["entry_ts"] == 2 * H and b_trade["entry_price"] == 60


def test_last_open_position_rule() -> None:
    frame = bars([(100, 100, 100, 100, ENTER_LONG), (100, 100, 100, 100, 0), (110, 110, 110, 110, 0)])
    trades, equity = run(frame, fee_rate=0.01)
    assert trades["is_open"].to_list() == [True] and trades["exit_price"][0] == 110
    marked = equity[-1]
    trades, equity = run(frame, fee_rate=0.01, close_at_end=True)
    assert trades["exit_reason"][0] == "end"
    assert equity[-1] == pytest.approx(marked * 0.99)


def test_deterministic(btc_4h: pl.DataFrame) -> None:
    from tradeloop.backtest import backtest_strategy
    from tradeloop.strategies import SmaCross, ThresholdRule

    cfg = BacktestConfig(stop_loss=0.05, trailing_stop=0.1, slippage=0.001)
    runs = [
        backtest_strategy(SmaCross(rule=ThresholdRule(allow_short=True)), btc_4h, cfg, timeframe="4h") for _ in range(2)
    ]
    assert runs[0].trades.equals(runs[1].trades) and runs[0].equity.equals(runs[1].equity)


def test_config_validation_names_the_field() -> None:
    with pytest.raises(ValueError, match="fee_rate"):
        BacktestConfig(fee_rate=-0.1)
    with pytest.raises(ValueError, match="vol_target"):
        BacktestConfig(sizing="vol_target")
