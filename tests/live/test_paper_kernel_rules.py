"""The paper broker replays the backtest kernel's stop, limit and short rules.

Hand-worked bars check each rule on numbers worked out by hand from the kernel's docstring;
then the live decide path without the database (``EntryPlanner`` -> ``PaperBroker`` ->
``Portfolio``, bar by bar) is driven with random signals over real candles and must give
the compiled kernel's fills and equity: random flags place exits on flat symbols, reversals
and signals over resting limit orders far more often than a strategy does."""

from __future__ import annotations

import asyncio
from collections import Counter

import numpy as np
import polars as pl
import pytest

from live.brokers.base import OrderRequest, OrderState
from live.brokers.paper import PaperBroker
from live.entries import EntryPlanner, can_short
from live.feeds.base import CandleBatch
from live.protection import child_order_id
from live.signal_intents import intents
from tests.live.conftest import REASON_OF_INTENT, trade_fills
from tradeloop.backtest import BacktestConfig, run_backtest
from tradeloop.portfolio import Portfolio
from tradeloop.strategies.signals import ENTER_LONG, ENTER_SHORT, EXIT_LONG, EXIT_SHORT
from tradeloop.trading import FillRecord, InstrumentId, OrderIntentKind, OrderSide, OrderType

SYM = "BTC-USD-PERP"
K = OrderIntentKind


def bar(ts: int, o: float, h: float, lo: float, c: float, symbol: str = SYM) -> CandleBatch:
    frame = pl.DataFrame(
        {"symbol": [symbol], "ts": [ts], "open": [o], "high": [h], "low": [lo], "close": [c], "volume": [1.0]}
    )
    return CandleBatch(ts=ts, candles=frame, received_ns=0)


def states(broker: PaperBroker, batch: CandleBatch, cash: float = 10_000.0) -> dict[str, OrderState]:
    return {s.client_order_id: s for s in asyncio.run(broker.on_bar(batch, cash=cash))}


def fill_of(state: OrderState) -> tuple[str, float, float, float]:
    [f] = state.fills
    return f.side, f.quantity, f.price, f.fee


def send(broker: PaperBroker, request: OrderRequest) -> None:
    assert asyncio.run(broker.submit(request)).status == "acknowledged"


def buy(cid: str = "e1", *, quote: float = 1000.0) -> OrderRequest:
    return OrderRequest(cid, SYM, "buy", quote_amount=quote)


# ------------------------------------------------------------------ hand-worked bars
def test_a_market_entry_is_protected_on_its_own_bar_stop_before_target() -> None:
    broker = PaperBroker.of(BacktestConfig(fee_rate=0.001, stop_loss=0.05, take_profit=0.10))
    send(broker, buy())
    # opens at 100: 10 units (1000 / 100, cash allows 10000 / 100.1); stop 95, target 110; the bar
    # touches both (low 94, high 111): the stop is taken first, at 95
    got = states(broker, bar(1, 100.0, 111.0, 94.0, 96.0))
    assert fill_of(got["e1"]) == ("buy", 10.0, 100.0, pytest.approx(1.0))
    assert fill_of(got["e1-sl"]) == ("sell", 10.0, 95.0, pytest.approx(0.95))
    assert got["e1-tp"].status == "canceled"  # one-cancels-the-other
    assert not broker.guards and not broker.book


def test_a_gap_through_the_stop_fills_at_the_open_and_slippage_applies() -> None:
    broker = PaperBroker.of(BacktestConfig(fee_rate=0.0, slippage=0.01, stop_loss=0.05))
    send(broker, buy(quote=1010.0))
    got = states(broker, bar(1, 100.0, 102.0, 99.0, 101.0))  # buys at 101 (open + 1%): 10 units
    assert fill_of(got["e1"])[:3] == ("buy", 10.0, 101.0)
    assert got["e1-sl"].status == "acknowledged"  # armed by the fill, stop at 101 * 0.95 = 95.95
    got = states(broker, bar(2, 90.0, 91.0, 89.0, 90.5))  # opens below it: filled at the open, less 1%
    assert fill_of(got["e1-sl"])[:3] == ("sell", 10.0, pytest.approx(89.1))


def test_the_trailing_stop_trails_the_previous_bars_peak() -> None:
    broker = PaperBroker.of(BacktestConfig(fee_rate=0.0, trailing_stop=0.1))
    send(broker, buy())
    assert states(broker, bar(1, 100.0, 105.0, 99.0, 104.0))["e1-ts"].status == "acknowledged"
    # the peak is 105 after bar 1 -> stop 94.5; bar 2's own high (120) joins only after its check
    assert "e1-ts" not in states(broker, bar(2, 104.0, 120.0, 94.6, 110.0))
    got = states(broker, bar(3, 110.0, 111.0, 107.0, 108.0))  # peak 120 -> stop 108: low 107 hits it
    assert fill_of(got["e1-ts"])[:3] == ("sell", 10.0, pytest.approx(108.0))


def test_a_signal_exit_cancels_the_legs_and_an_entry_that_lapses_cancels_its_own() -> None:
    broker = PaperBroker.of(BacktestConfig(fee_rate=0.0, stop_loss=0.05, take_profit=0.1))
    send(broker, buy())
    states(broker, bar(1, 100.0, 101.0, 99.0, 100.0))
    send(broker, OrderRequest("x1", SYM, "sell", quantity=10.0, reduce_only=True))
    got = states(broker, bar(2, 102.0, 103.0, 90.0, 95.0))  # the exit at the open comes before any stop
    assert fill_of(got["x1"])[:3] == ("sell", 10.0, 102.0)
    assert got["e1-sl"].status == got["e1-tp"].status == "canceled"
    send(broker, buy("e2"))
    got = states(broker, bar(3, 100.0, 101.0, 99.0, 100.0), cash=0.0)
    assert got["e2"].status == "rejected" and got["e2-sl"].status == got["e2-tp"].status == "canceled"


def test_a_limit_entry_waits_for_a_trade_through_then_expires() -> None:
    config = BacktestConfig(fee_rate=0.001, entry_order="limit", limit_ttl_bars=2, maker_fee_rate=0.0, stop_loss=0.05)
    broker = PaperBroker.of(config)
    send(broker, OrderRequest("e1", SYM, "buy", quantity=2.0, order_type=OrderType.LIMIT, price=99.0))
    assert states(broker, bar(1, 100.0, 101.0, 99.0, 100.0)) == {}  # touched, not traded through
    got = states(broker, bar(2, 100.0, 101.0, 99.5, 100.0))
    assert got["e1"].status == "expired" and got["e1-sl"].status == "canceled"
    send(broker, OrderRequest("e2", SYM, "buy", quantity=2.0, order_type=OrderType.LIMIT, price=99.0))
    got = states(broker, bar(3, 98.5, 100.0, 98.0, 99.0))  # opens below the limit: filled at the open
    assert fill_of(got["e2"]) == ("buy", 2.0, 98.5, 0.0)  # maker fee 0, no slippage


def test_on_its_fill_bar_a_limit_entry_checks_the_stop_not_the_target() -> None:
    config = BacktestConfig(fee_rate=0.0, entry_order="limit", stop_loss=0.05, take_profit=0.1)
    broker = PaperBroker.of(config)
    send(broker, OrderRequest("e1", SYM, "buy", quantity=1.0, order_type=OrderType.LIMIT, price=99.0))
    got = states(broker, bar(1, 100.0, 120.0, 98.0, 100.0))  # the high came before the fill: no target
    assert fill_of(got["e1"])[:3] == ("buy", 1.0, 99.0) and got["e1-tp"].status == "acknowledged"
    send(broker, OrderRequest("e2", "ETH-USD", "buy", quantity=1.0, order_type=OrderType.LIMIT, price=99.0))
    got = states(broker, bar(2, 100.0, 101.0, 90.0, 95.0, symbol="ETH-USD"))  # the stop is checked
    assert fill_of(got["e2-sl"])[:3] == ("sell", 1.0, pytest.approx(99.0 * 0.95))


def test_a_new_signal_cancels_a_resting_limit_entry_at_its_next_candle() -> None:
    broker = PaperBroker.of(BacktestConfig(fee_rate=0.0, entry_order="limit", limit_ttl_bars=5))
    send(broker, OrderRequest("e1", SYM, "buy", quantity=1.0, order_type=OrderType.LIMIT, price=99.0))
    assert states(broker, bar(1, 100.0, 101.0, 99.5, 100.0)) == {}
    broker.on_decision(atr={}, signalled=[SYM])  # e.g. an exit signal while flat: no order, but a cancel
    got = states(broker, bar(2, 100.0, 101.0, 90.0, 95.0))  # would have filled: canceled first
    assert got["e1"].status == "canceled" and not got["e1"].fills


def test_a_short_pays_slippage_both_ways_and_its_stop_is_above() -> None:
    broker = PaperBroker.of(BacktestConfig(fee_rate=0.001, slippage=0.001, stop_loss=0.05))
    send(broker, OrderRequest("e1", SYM, "sell", quote_amount=999.0))
    got = states(broker, bar(1, 100.0, 101.0, 99.0, 100.0))  # sells at 99.9: 10 units
    assert fill_of(got["e1"])[:3] == ("sell", pytest.approx(10.0), pytest.approx(99.9))
    got = states(broker, bar(2, 100.0, 106.0, 99.0, 105.0))  # stop 99.9 * 1.05 = 104.895, bought at +0.1%
    side, qty, price, fee = fill_of(got["e1-sl"])
    assert (side, qty) == ("buy", pytest.approx(10.0)) and price == pytest.approx(104.895 * 1.001)
    assert fee == pytest.approx(10.0 * 104.895 * 1.001 * 0.001)


def test_a_bar_that_comes_again_starts_over_from_the_book_it_found() -> None:
    broker = PaperBroker.of(BacktestConfig(fee_rate=0.0, stop_loss=0.05))
    send(broker, buy())
    states(broker, bar(1, 100.0, 101.0, 99.0, 100.0))
    first = states(broker, bar(2, 100.0, 100.0, 90.0, 92.0))  # the stop fires at 95
    assert fill_of(first["e1-sl"])[:3] == ("sell", 10.0, 95.0)
    # bar 2's transaction did not commit (a lost database): the engine re-sends the orders the
    # database still has open, the stop among them, then feeds bar 2 again
    leg = OrderRequest("e1-sl", SYM, "sell", 10.0, order_type=OrderType.STOP, trigger_price=95.0, reduce_only=True)
    assert asyncio.run(broker.recover(leg, sent=True, since_ms=0)).status == "acknowledged"
    again = states(broker, bar(2, 100.0, 100.0, 90.0, 92.0))
    assert fill_of(again["e1-sl"]) == fill_of(first["e1-sl"]) and not broker.guards
    assert states(broker, bar(3, 92.0, 93.0, 80.0, 85.0)) == {}  # nothing left to fill


def test_intents_follow_the_kernels_exit_and_entry_rules() -> None:
    inst = InstrumentId("paper", SYM)
    kw = {"instrument": inst, "equity": 1000.0, "fraction": 0.5, "price": 100.0}
    reverse = intents(ENTER_SHORT | EXIT_LONG, position=2.0, shorts=True, **kw)
    assert [(i.kind, i.side, i.quantity, i.quote_amount) for i in reverse] == [
        (K.EXIT_LONG, OrderSide.SELL, 2.0, None),
        (K.ENTER_SHORT, OrderSide.SELL, None, 500.0),
    ]
    assert [i.kind for i in intents(ENTER_SHORT | EXIT_LONG, position=2.0, shorts=False, **kw)] == [K.EXIT_LONG]
    assert intents(ENTER_LONG, position=2.0, **kw) == []  # no pyramiding
    assert intents(ENTER_LONG | ENTER_SHORT, position=0.0, shorts=True, **kw) == []
    assert intents(ENTER_LONG, position=0.0, **{**kw, "fraction": 0.0}) == []  # a size of 0 enters nothing
    [limit] = intents(ENTER_LONG, position=0.0, limit_offset=0.01, **kw)
    assert (limit.order_type, limit.price, limit.quantity) == (OrderType.LIMIT, 99.0, pytest.approx(500.0 / 99.0))
    [cover] = intents(EXIT_SHORT, position=-3.0, **kw)
    assert (cover.kind, cover.side, cover.quantity, cover.reduce_only) == (K.EXIT_SHORT, OrderSide.BUY, 3.0, True)


def test_only_perpetuals_may_be_shorted() -> None:
    assert not can_short(InstrumentId("coinbase", "BTC-USD"))
    assert not can_short(InstrumentId("binance", "BTC/USDT"))
    assert can_short(InstrumentId("binanceusdm", "BTC/USDT:USDT"))
    assert can_short(InstrumentId("coinbase", "BTC-USD-PERP"))
    assert can_short(InstrumentId("binanceusdm", "BTC-USDT"))  # a perpetuals venue


# ------------------------------------------------------------------ random signals against the kernel
FLAGS = np.array(
    [ENTER_LONG, EXIT_LONG, ENTER_SHORT, EXIT_SHORT, ENTER_LONG | EXIT_SHORT, ENTER_SHORT | EXIT_LONG], dtype=np.int8
)


def random_signals(btc_4h: pl.DataFrame, eth_4h: pl.DataFrame, *, bars: int, seed: int) -> pl.DataFrame:
    """Both symbols' last ``bars`` candles (as perpetuals) with a random signal on 15% of them."""
    rng = np.random.default_rng(seed)
    frames = []
    for symbol, candles in (("BTC-USD-PERP", btc_4h), ("ETH-USD-PERP", eth_4h)):
        tail = candles.sort("ts").tail(bars).select("ts", "open", "high", "low", "close", "volume")
        flags = np.where(rng.random(tail.height) < 0.15, rng.choice(FLAGS, tail.height), 0).astype(np.int8)
        frames.append(tail.with_columns(symbol=pl.lit(symbol), signal=pl.Series(flags, dtype=pl.Int8)))
    return pl.concat(frames).sort("ts", "symbol")


async def replay_paper(frame: pl.DataFrame, config: BacktestConfig) -> tuple[list[tuple], float, Counter]:
    """The live decide path bar by bar without the database: fills (as ``trade_fills``), the
    final equity and the count of (kind, status) the broker reported."""
    broker, book = PaperBroker.of(config), Portfolio(cash=config.init_cash)
    planner = EntryPlanner(config, venue="paper", timeframe="4h")
    kinds: dict[str, str] = {}
    fills, seen, last = [], Counter(), {}
    window = frame.clear()
    for n, (_, batch) in enumerate(frame.group_by("ts", maintain_order=True)):
        ts = int(batch["ts"][0])
        for state in await broker.on_bar(CandleBatch(ts=ts, candles=batch, received_ns=0), cash=book.cash):
            seen[(kinds[state.client_order_id], state.status)] += 1
            for f in state.fills:
                inst = InstrumentId("paper", f.symbol)
                side = OrderSide(f.side)
                book.apply_fill(
                    FillRecord(instrument=inst, side=side, quantity=f.quantity, price=f.price, fee=f.fee, ts=ts)
                )
                fills.append((f.ts, f.symbol, f.side, f.quantity, f.price, REASON_OF_INTENT[kinds[f.client_order_id]]))
        window = pl.concat([window, batch])
        last.update(batch.select("symbol", "close").rows())
        book.mark({InstrumentId("paper", s): c for s, c in last.items()})
        signals = [(s, int(f)) for s, f in batch.select("symbol", "signal").rows() if f]
        positions = {p.instrument.symbol: p.quantity for p in book.positions()}
        decided = planner.decide(
            signals, window=window, positions=positions, equity=book.equity(), last=last, broker=broker
        )
        for k, intent in enumerate(decided):
            cid = f"o{n}-{k}"
            kinds[cid] = intent.kind.value
            kinds.update({child_order_id(cid, leg.kind): leg.kind.value for leg in intent.protection})
            request = OrderRequest(
                cid,
                intent.instrument.symbol,
                intent.side.value,
                intent.quantity,
                intent.quote_amount,
                order_type=intent.order_type,
                price=intent.price,
                reduce_only=intent.reduce_only,
            )
            await broker.submit(request)
    return sorted(fills), book.equity(), seen


CASES = {
    "stops": dict(stop_loss=0.03, take_profit=0.04, trailing_stop=0.035, slippage=0.0005),
    "atr": dict(atr_stop=1.5, atr_trailing=2.0, atr_window=10, take_profit=0.05),
    "limit": dict(entry_order="limit", limit_offset=0.004, limit_ttl_bars=3, maker_fee_rate=0.0002, stop_loss=0.03),
    "vol_target": dict(sizing="vol_target", vol_target=0.5, vol_window=20, fraction=0.8, take_profit=0.03),
}


@pytest.mark.parametrize("case", list(CASES))
def test_random_signals_through_the_paper_broker_equal_the_kernel(
    case: str, btc_4h: pl.DataFrame, eth_4h: pl.DataFrame
) -> None:
    config = BacktestConfig(**{"fee_rate": 0.001, "fraction": 0.6, **CASES[case]})
    frame = random_signals(btc_4h, eth_4h, bars=300, seed=len(case))
    expected = run_backtest(frame, config, timeframe="4h")
    got, equity, seen = asyncio.run(replay_paper(frame, config))
    want = trade_fills(expected.trades)
    assert [(*f[:3], f[5]) for f in got] == [(*e[:3], e[5]) for e in want]
    np.testing.assert_allclose([f[3] for f in got], [e[3] for e in want], rtol=1e-9)
    np.testing.assert_allclose([f[4] for f in got], [e[4] for e in want], rtol=1e-12)
    assert equity == pytest.approx(expected.final_equity, rel=1e-9)
    reasons = Counter(f[5] for f in got)
    assert reasons["entry"] >= 20 and any(f[5] == "entry" and f[2] == "sell" for f in got)  # shorts among them
    if case == "limit":  # expiries and cancels by a new signal happened
        assert seen[("enter_long", "expired")] + seen[("enter_short", "expired")] > 0
        assert seen[("enter_long", "canceled")] + seen[("enter_short", "canceled")] > 0
    else:
        assert sum(reasons[r] for r in ("stop_loss", "take_profit", "trailing_stop")) >= 5
