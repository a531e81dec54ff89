"""Run-time reconciliation of a session on several venues (``live.reconcile.VenueCheck`` behind a
``live.brokers.router.BrokerRouter``): each venue's balances are compared with its own share of
the session's book, so a shortfall on one venue is never cancelled by a surplus on the other,
and the drift names the venue."""

from __future__ import annotations

import asyncio

import pytest

from live.brokers.base import MarketAssets, OrderState
from live.brokers.router import BrokerRouter
from live.reconcile import VenueCheck
from tradeloop.ops import Fill, OpsStore, Order

SYMBOLS = ["BTC-USDT", "okx:ETH-USDT"]


class Account:
    """One venue's account: its balances; nothing open, no trades."""

    def __init__(self, venue: str, balances: dict[str, float], base: str):
        self.venue, self.balances_now, self.base = venue, balances, base

    async def resolve(self, order, *, since_ms: int) -> OrderState:
        raise AssertionError("nothing to resolve")

    async def query(self, order):
        return None

    async def open_orders(self, symbol: str) -> set[str]:
        return set()

    async def trades(self, symbol: str, *, after_trade_id: str | None) -> list:
        return []

    async def balances(self) -> dict[str, float]:
        return dict(self.balances_now)

    async def assets(self, symbol: str) -> MarketAssets:
        return MarketAssets(base=self.base, quote="USDT", amount_step=1e-8, price_tick=0.01)


def bought(db, session_id: int, *, venue: str, symbol: str, quantity: float, price: float, n: int) -> None:
    order = Order(session_id=session_id, client_order_id=f"c-{n}", venue=venue, symbol=symbol, side="buy",
                  intent="entry", quantity=quantity, decided_ts=0, status="filled", filled_qty=quantity)  # fmt: skip
    db.add(order)
    db.flush()
    db.add(Fill(order_id=order.id, session_id=session_id, venue=venue, symbol=symbol, trade_id=f"t-{n}", side="buy",
                quantity=quantity, price=price, fee=0.0, ts=0))  # fmt: skip


def test_each_venue_is_reconciled_on_its_own_balances(tmp_path) -> None:
    store = OpsStore.open(f"sqlite:///{tmp_path / 'ops.db'}")
    session = store.create_session(
        name="two", strategy="sma_cross", exchange="binance", timeframe="1m", symbols=SYMBOLS, mode="live",
        init_cash=2_000.0, config={},
    )  # fmt: skip
    binance = Account("binance", {"USDT": 1_000.0, "BTC": 0.0}, "BTC")
    okx = Account("okx", {"USDT": 1_000.0, "ETH": 0.0}, "ETH")
    router = BrokerRouter({"binance": binance, "okx": okx}, default_venue="binance")  # type: ignore[dict-item]
    check = VenueCheck.of(router, symbols=SYMBOLS, every_bars=1)
    assert check is not None
    book = {"cash": 2_000.0, "positions": {"BTC-USDT": 0.0, "okx:ETH-USDT": 0.0}}

    def run() -> list:
        async def once() -> list:
            return await check.run(
                1, store, session.id, apply=lambda db, state: None,
                holdings=lambda: (book["cash"], book["positions"]),
            )  # fmt: skip

        return asyncio.run(once())

    assert run() == []  # the first comparison records the baseline
    [baseline] = [e.detail for e in store.audit_log(session.id) if e.event == "venue_baseline"]
    assert set(baseline) == {"binance:USDT", "binance:BTC", "okx:USDT", "okx:ETH"}
    # the session buys 0.01 BTC at 20,000 on Binance; the venue moved 200 USDT for it there, but
    # OKX's account lost 200 USDT and Binance's gained 200 USDT more than the fills say: the
    # session's one cash pool still adds up (2,000 - 200 = 1,800 = 1,000 + 800), each venue does not
    with store.transaction() as db:
        bought(db, session.id, venue="binance", symbol="BTC-USDT", quantity=0.01, price=20_000.0, n=1)
    book = {"cash": 1_800.0, "positions": {"BTC-USDT": 0.01, "okx:ETH-USDT": 0.0}}
    binance.balances_now = {"USDT": 1_000.0, "BTC": 0.01}
    okx.balances_now = {"USDT": 800.0, "ETH": 0.0}
    drifts = run()
    assert sorted(d.asset for d in drifts) == ["binance:USDT", "okx:USDT"]
    off = {d.asset: d.off_by for d in drifts}
    assert off["okx:USDT"] == pytest.approx(-200.0) and off["binance:USDT"] == pytest.approx(200.0)
    reason = store.session("two").needs_ack
    assert reason is not None and "okx:USDT: venue 800" in reason
    store.close()
