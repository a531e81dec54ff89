"""The portfolio model equals the compiled backtest kernel on real candles.

The kernel's trades (shorts, reversals, stops) become fills in the kernel's order within a
bar (signal exits at the open, entries at the open, stop exits, end-of-data closes), with
the kernel's prices and fees; a :class:`Portfolio` applies them and marks at the closes.
Its equity must equal the kernel's curve bar by bar, and its realised P&L per closed trade
(its unrealised P&L per open one) the kernel's trade pnl.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import polars as pl
import pytest

from tradeloop.backtest import BacktestConfig, backtest_strategy
from tradeloop.portfolio import Portfolio
from tradeloop.strategies import SmaCross, ThresholdRule
from tradeloop.trading import FillRecord, InstrumentId, OrderSide

PHASE = {"signal": 0, "stop_loss": 2, "take_profit": 2, "trailing_stop": 2, "end": 3}  # entries are phase 1


def candles(names: list[str]) -> pl.DataFrame:
    from conftest import sample

    frames = [sample(n).with_columns(symbol=pl.lit(n.split("__")[1].replace("-", "/"))) for n in names]
    return pl.concat(frames)


CASES = {
    "two symbols, stops, slippage, open at end": (
        ["coinbase__BTC-USD__4h", "coinbase__ETH-USD__4h"],
        "4h",
        BacktestConfig(
            fraction=0.5, fee_rate=0.001, slippage=0.0005, stop_loss=0.05, take_profit=0.15, trailing_stop=0.1
        ),
    ),
    "one symbol, stop-loss, closed at end": (
        ["coinbase__BTC-USD__1h"],
        "1h",
        BacktestConfig(fee_rate=0.002, stop_loss=0.03, close_at_end=True),
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_portfolio_equals_the_kernel_bar_by_bar(case: str) -> None:
    names, timeframe, config = CASES[case]
    strategy = SmaCross(fast=10, slow=30, rule=ThresholdRule(allow_short=True))
    result = backtest_strategy(strategy, candles(names), config, timeframe=timeframe)
    prices = result.prices
    assert prices is not None
    insts = [InstrumentId("coinbase", s) for s in prices.symbols]
    bar_of = {int(ts): i for i, ts in enumerate(prices.ts)}
    trades = result.trades.to_dicts()
    # the run is worth comparing: shorts, reversals at one open, stop exits
    assert any(t["side"] == "short" for t in trades) and any(t["side"] == "long" for t in trades)
    assert any(t["exit_reason"] in ("stop_loss", "trailing_stop", "take_profit") for t in trades)
    assert any(t["exit_reason"] == ("end" if config.close_at_end else "open") for t in trades)
    exits_at = {(t["symbol"], t["exit_ts"]) for t in trades if t["exit_reason"] == "signal"}
    assert any((t["symbol"], t["entry_ts"]) in exits_at for t in trades)

    events: dict[int, list[tuple[int, int, FillRecord, dict | None]]] = defaultdict(list)
    for t in trades:
        j = prices.symbols.index(t["symbol"])
        long = t["side"] == "long"
        qty, entry, exit_ = t["qty"], t["entry_price"], t["exit_price"]
        entry_side = OrderSide.BUY if long else OrderSide.SELL
        fee = config.fee_rate
        b = bar_of[t["entry_ts"]]
        events[b].append(
            (
                1,
                j,
                FillRecord(
                    instrument=insts[j],
                    side=entry_side,
                    quantity=qty,
                    price=entry,
                    fee=qty * entry * fee,
                    ts=t["entry_ts"],
                ),
                None,
            )
        )
        if t["exit_reason"] != "open":
            b = bar_of[t["exit_ts"]]
            events[b].append(
                (
                    PHASE[t["exit_reason"]],
                    j,
                    FillRecord(
                        instrument=insts[j],
                        side=entry_side.opposite,
                        quantity=qty,
                        price=exit_,
                        fee=qty * exit_ * fee,
                        ts=t["exit_ts"],
                    ),
                    t,
                )
            )

    book = Portfolio(cash=config.init_cash)
    equity = np.empty(len(prices.ts))
    closed = 0

    def apply(phase: int, j: int, f: FillRecord, trade: dict | None) -> None:
        nonlocal closed
        before = book.position(f.instrument)
        realized = 0.0 if before is None else before.realized_pnl
        book.apply_fill(f)
        after = book.position(f.instrument)
        assert after is not None
        if trade is None:  # an entry opens from flat, as the kernel never pyramids
            assert after.quantity == pytest.approx(f.side.sign * f.quantity, rel=1e-12)
        else:
            assert after.quantity == 0.0
            notional = trade["qty"] * trade["entry_price"]
            assert after.realized_pnl - realized == pytest.approx(trade["pnl"], rel=1e-9, abs=1e-9 * notional)
            closed += 1

    for t in range(len(prices.ts)):
        for phase, j, f, trade in sorted(events.get(t, []), key=lambda e: (e[0], e[1])):
            if phase < 3:
                apply(phase, j, f, trade)
        book.mark({inst: float(prices.close[t, j]) for j, inst in enumerate(insts)})  # NaN: keeps the last
        for phase, j, f, trade in sorted(events.get(t, []), key=lambda e: (e[0], e[1])):
            if phase == 3:
                apply(phase, j, f, trade)
        equity[t] = book.equity()

    kernel_equity = result.equity.sort("ts")["equity"].to_numpy()
    np.testing.assert_allclose(equity, kernel_equity, rtol=1e-9, atol=0)
    assert closed == sum(t["exit_reason"] != "open" for t in trades)
    for t in trades:
        if t["exit_reason"] == "open":
            pos = book.position(insts[prices.symbols.index(t["symbol"])])
            assert pos is not None and pos.unrealized_pnl == pytest.approx(t["pnl"], rel=1e-9)
    assert book.open_positions() == sum(t["exit_reason"] == "open" for t in trades)
