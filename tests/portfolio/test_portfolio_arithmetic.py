"""Portfolio arithmetic against hand-computed numbers and the accounting identity."""

from __future__ import annotations

import math
import random
from types import SimpleNamespace

import pytest

from tradeloop.errors import PortfolioError
from tradeloop.portfolio import CashFlowKind, Portfolio
from tradeloop.trading import FillRecord, InstrumentId, OrderSide

BTC = InstrumentId("paper", "BTC/USDT")
ETH = InstrumentId("paper", "ETH/USDT")
BUY, SELL = OrderSide.BUY, OrderSide.SELL


def fill(side: OrderSide, qty: float, price: float, fee: float, ts: int = 0, inst: InstrumentId = BTC) -> FillRecord:
    return FillRecord(instrument=inst, side=side, quantity=qty, price=price, fee=fee, ts=ts)


def approx(x: float) -> object:
    return pytest.approx(x, rel=1e-12, abs=1e-9)


def test_long_open_add_reduce_close() -> None:
    book = Portfolio(cash=10_000.0)
    assert book.apply_fill(fill(BUY, 2, 100.0, 0.2, ts=1)) == approx(-200.2)
    book.mark({BTC: 110.0})
    assert book.equity() == approx(9_799.8 + 220.0)
    assert book.position(BTC).unrealized_pnl == approx(2 * 10 - 0.2)

    assert book.apply_fill(fill(BUY, 2, 120.0, 0.24, ts=2)) == approx(-240.24)
    pos = book.position(BTC)
    assert (pos.quantity, pos.entry_price, pos.entry_fee, pos.entry_ts) == (approx(4), approx(110.0), approx(0.44), 1)

    assert book.apply_fill(fill(SELL, 1, 130.0, 0.13, ts=3)) == approx(129.87)
    pos = book.position(BTC)
    # 1 * (130 - 110) - 0.44 / 4 (entry fee, pro rata) - 0.13
    assert pos.realized_pnl == approx(19.76)
    assert (pos.quantity, pos.entry_price, pos.entry_fee) == (approx(3), approx(110.0), approx(0.33))

    assert book.apply_fill(fill(SELL, 3, 90.0, 0.27, ts=4)) == approx(269.73)
    pos = book.position(BTC)
    assert pos.realized_pnl == approx(19.76 + 3 * (90 - 110) - 0.33 - 0.27)
    assert (pos.quantity, pos.entry_fee, pos.entry_ts) == (0.0, 0.0, None)
    assert book.cash == approx(10_000 - 200.2 - 240.24 + 129.87 + 269.73)
    assert book.equity() == approx(10_000 + pos.realized_pnl)
    assert book.open_positions() == 0 and book.positions() == [] and len(book.positions(include_flat=True)) == 1


def test_short_open_and_close_match_the_kernels_cash_model() -> None:
    # kernel: short entry cash += q*px - q*px*fee; short exit cash -= q*px*(1 + fee)
    q, fee_rate = 2.0, 0.001
    book = Portfolio(cash=1_000.0)
    assert book.apply_fill(fill(SELL, q, 50.0, q * 50.0 * fee_rate)) == approx(q * 50.0 - q * 50.0 * fee_rate)
    assert book.quantity(BTC) == approx(-2.0)
    book.mark({BTC: 40.0})
    assert book.equity() == approx(1_099.9 - 80.0)
    assert book.position(BTC).unrealized_pnl == approx(-2 * (40 - 50) - 0.1)
    assert book.apply_fill(fill(BUY, q, 40.0, q * 40.0 * fee_rate)) == approx(-(q * 40.0 * (1 + fee_rate)))
    # kernel trade pnl: direction * qty * (exit - entry) - fees
    assert book.position(BTC).realized_pnl == approx(-1 * 2 * (40 - 50) - 0.1 - 0.08)
    assert book.equity() == approx(1_000 + 19.82)


def test_reversal_long_to_short_and_back() -> None:
    book = Portfolio(cash=10_000.0)
    book.apply_fill(fill(BUY, 2, 100.0, 0.2, ts=1))
    assert book.apply_fill(fill(SELL, 5, 110.0, 0.55, ts=2)) == approx(549.45)
    pos = book.position(BTC)
    # closes 2 with 2/5 of the fee, opens 3 short at 110 with the rest of it
    assert pos.realized_pnl == approx(2 * 10 - 0.2 - 0.22)
    assert (pos.quantity, pos.entry_price, pos.entry_fee, pos.entry_ts) == (approx(-3), approx(110), approx(0.33), 2)
    book.mark({BTC: 110.0})
    assert book.equity() == approx(10_000 + 19.58 - 0.33)

    assert book.apply_fill(fill(BUY, 4, 100.0, 0.4, ts=3)) == approx(-400.4)
    pos = book.position(BTC)
    assert pos.realized_pnl == approx(19.58 + 3 * (110 - 100) - 0.33 - 0.3)
    assert (pos.quantity, pos.entry_price, pos.entry_fee, pos.entry_ts) == (approx(1), approx(100), approx(0.1), 3)
    book.mark({BTC: 100.0})
    assert book.equity() == approx(10_000 + 48.95 - 0.1)


def test_exposure_counts_and_snapshot() -> None:
    book = Portfolio(cash=1_000.0)
    book.apply_fill(fill(BUY, 2, 100.0, 0.0))
    book.apply_fill(fill(SELL, 3, 12.0, 0.0, inst=ETH))
    unheld = InstrumentId("paper", "SOL/USDT")
    book.mark({BTC: 110.0, unheld: 20.0})  # ETH not marked yet: at its entry price
    assert book.gross_exposure() == approx(220 + 36)
    assert book.net_exposure() == approx(220 - 36)
    assert book.open_positions() == 2
    snap = book.snapshot()
    assert snap.cash == approx(1_000 - 200 + 36)
    assert snap.equity == approx(snap.cash + 220 - 36)
    assert dict(snap.positions) == {BTC: approx(2), ETH: approx(-3)}
    assert dict(snap.prices) == {BTC: 110.0, ETH: 12.0, unheld: 20.0}
    assert (snap.gross_exposure, snap.net_exposure) == (approx(256), approx(184))
    with pytest.raises(TypeError):
        snap.positions[BTC] = 5.0  # type: ignore[index]
    book.apply_fill(fill(SELL, 2, 110.0, 0.0))  # later changes leave the snapshot alone
    assert snap.positions[BTC] == approx(2)


def test_missing_prices_keep_the_last_one_and_bad_ones_raise() -> None:
    book = Portfolio(cash=0.0)
    book.apply_fill(fill(BUY, 1, 100.0, 0.0))
    assert book.equity() == approx(0.0)  # no mark yet: entry price
    book.mark({BTC: 105.0})
    book.mark({BTC: None})
    book.mark({BTC: math.nan})
    assert book.price(BTC) == 105.0 and book.equity() == approx(5.0)
    with pytest.raises(PortfolioError, match="not positive"):
        book.mark({BTC: -1.0})


@pytest.mark.parametrize(
    ("qty", "price", "fee"),
    [(0.0, 1.0, 0.0), (-1.0, 1.0, 0.0), (1.0, math.nan, 0.0), (1.0, 0.0, 0.0), (1, 1, math.inf)],
)
def test_bad_fills_raise_and_change_nothing(qty: float, price: float, fee: float) -> None:
    book = Portfolio(cash=100.0)
    with pytest.raises(PortfolioError):
        book.apply_fill(fill(BUY, qty, price, fee))
    assert book.cash == 100.0 and book.position(BTC) is None


def test_dust_closes_exactly_and_does_not_reverse() -> None:
    book = Portfolio(cash=0.0)
    book.apply_fill(fill(BUY, 1.0, 100.0, 0.1))
    book.apply_fill(fill(SELL, 1.0 - 1e-12, 100.0, 0.1))  # leaves 1e-12: a close
    pos = book.position(BTC)
    assert pos.quantity == 0.0 and pos.entry_fee == 0.0 and book.open_positions() == 0
    assert pos.realized_pnl == approx(-0.2)  # the whole entry fee is charged

    book.apply_fill(fill(BUY, 1.0, 100.0, 0.0))
    book.apply_fill(fill(SELL, 1.0 + 5e-10, 100.0, 0.0))  # over-closes by < 1e-9 of the trade: no short
    assert book.quantity(BTC) == 0.0

    book.apply_fill(fill(BUY, 1.0, 100.0, 0.0))
    book.apply_fill(fill(SELL, 0.99999999, 100.0, 0.0))  # 1e-8 left: above the tolerance, still open
    assert book.quantity(BTC) == pytest.approx(1e-8, rel=1e-6)
    book.apply_fill(fill(SELL, 1e-6, 100.0, 0.0))  # a real reversal
    assert book.quantity(BTC) == pytest.approx(-(1e-6 - 1e-8), rel=1e-6)


def test_cash_flows() -> None:
    book = Portfolio(cash=100.0)
    book.apply_fill(fill(SELL, 1.0, 50.0, 0.0))
    book.add_cash_flow(-0.5, reason=CashFlowKind.FUNDING, instrument=BTC)
    book.add_cash_flow(25.0, reason=CashFlowKind.DEPOSIT)
    assert book.cash == approx(174.5)
    assert book.position(BTC).realized_pnl == approx(-0.5)
    assert dict(book.cash_flows()) == {CashFlowKind.FUNDING: -0.5, CashFlowKind.DEPOSIT: 25.0}
    with pytest.raises(PortfolioError):
        book.add_cash_flow(math.nan, reason=CashFlowKind.ADJUSTMENT)


def row(symbol: str, quantity: float, **kw: object) -> SimpleNamespace:
    base = dict(entry_price=0.0, entry_fee=0.0, entry_ts=None, last_price=None, realized_pnl=0.0)
    return SimpleNamespace(symbol=symbol, quantity=quantity, **{**base, **kw})


def test_rebuild_from_rows_continues_where_the_book_left_off() -> None:
    book = Portfolio(cash=10_000.0)
    book.apply_fill(fill(BUY, 4, 100.0, 0.4, ts=7))
    book.apply_fill(fill(SELL, 1, 120.0, 0.12, ts=8))
    book.mark({BTC: 115.0})
    rows = [
        row(
            s.instrument.symbol,
            s.quantity,
            entry_price=s.entry_price,
            entry_fee=s.entry_fee,
            entry_ts=s.entry_ts,
            last_price=s.last_price,
            realized_pnl=s.realized_pnl,
        )
        for s in book.positions(include_flat=True)
    ]
    rows.append(row("ETH/USDT", 1e-13, entry_price=10.0, realized_pnl=3.0))  # dust: loads flat
    again = Portfolio.from_rows(book.cash, rows, venue="paper")
    assert again.equity() == approx(book.equity())
    assert (
        again.open_positions() == 1
        and again.quantity(ETH) == 0.0
        and again.realized_pnl() == approx(book.realized_pnl() + 3.0)
    )
    assert again.position(BTC) == book.position(BTC)
    for b in (book, again):
        b.apply_fill(fill(SELL, 3, 110.0, 0.33, ts=9))
    assert again.position(BTC).realized_pnl == approx(book.position(BTC).realized_pnl)

    with_venue = Portfolio.from_rows(0.0, [SimpleNamespace(**vars(row("BTC/USDT", 1.0)), venue="binance")])
    assert with_venue.quantity(InstrumentId("binance", "BTC/USDT")) == 1.0
    with pytest.raises(PortfolioError, match="venue="):
        Portfolio.from_rows(0.0, [row("BTC/USDT", 1.0)])


def test_accounting_identity_over_random_fills() -> None:
    """Equity - start cash = realised + unrealised P&L, whatever the sequence of fills."""
    rng = random.Random(11)
    book = Portfolio(cash=5_000.0)
    insts = [BTC, ETH]
    for i in range(2_000):
        inst = rng.choice(insts)
        px = rng.uniform(50, 150)
        qty = rng.uniform(0.01, 3.0)
        book.apply_fill(fill(rng.choice([BUY, SELL]), qty, px, qty * px * 0.001, ts=i, inst=inst))
        book.mark({inst: px * rng.uniform(0.95, 1.05)})
        unrealized = sum(p.unrealized_pnl for p in book.positions())
        assert book.equity() - 5_000.0 == pytest.approx(book.realized_pnl() + unrealized, abs=1e-7)
