"""Paper execution of arbitrage opportunities through the order manager, in the real
operational database (SQLite, PostgreSQL): an opening sends both legs, each stored ``new``,
then ``sent`` before its create goes out, then ``filled`` at the quoted price with the venue's
taker fee, and the pair's realised PnL is the spread less both fees (computed here); detection
only by default; the inventory held limits the sell leg (and the buy leg's cash); an opening
executes once, across a restart too; a broker that may reach a real venue is refused."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import select

from live.arbitrage import EXECUTIONS, ArbitrageService, replay_tops
from live.arbitrage_paper import EXECUTED, SKIPPED, PaperExecutor, leg_id
from live.brokers.base import OrderRequest, OrderState
from live.brokers.paper import PaperBroker
from live.brokers.quote_paper import QuotePaperBroker
from live.bus import InProcessBus
from live.orders import mark_sent
from tests.arbitrage.test_scanner import recorded, top
from tests.conftest import throwaway_database
from tradeloop.arbitrage import ArbitrageConfig, ArbitrageScanner, PaperExecutionConfig, TopOfBook
from tradeloop.errors import ConfigError
from tradeloop.ops import Fill, OpsStore, Order
from tradeloop.ops.market_store import MarketStore
from tradeloop.ops.session_reads import Page
from tradeloop.trading import OrderSide

FEES = {"a": 0.001, "b": 0.002}
# a sells 0.8 at 100; b bids 101 for 0.5: 100 bps gross, 70 net of both fees
OPEN = [top("a", 0, bid=99, ask=100, ask_size=0.8), top("b", 10, bid=101, ask=102, bid_size=0.5)]
CLOSE = top("b", 500, bid=99.5, ask=100.5)
FUNDED = {"a": {"USDT": 10_000.0, "BTC": 1.0}, "b": {"USDT": 10_000.0, "BTC": 1.0}}


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path: Path):
    """An operational database of the test's own (its sessions, orders and fills only)."""
    with contextlib.ExitStack() as stack:
        url = f"sqlite:///{tmp_path / 'ops.db'}"
        if request.param == "postgresql":
            url = stack.enter_context(throwaway_database("tradeloop_arbpaper"))
        ops = OpsStore.open(url)
        stack.callback(ops.close)
        yield ops


class WatchedBook(QuotePaperBroker):
    """The quote paper book, noting each order's stored status when its create arrives."""

    def __init__(self, store: OpsStore, **kwargs):
        super().__init__(**kwargs)
        self.store, self.seen = store, []

    async def submit(self, order: OrderRequest) -> OrderState:
        with self.store.transaction() as db:
            row = db.scalar(select(Order).where(Order.client_order_id == order.client_order_id))
            self.seen.append((order.client_order_id, row.status, row.sent_at_ms is not None))
        return await super().submit(order)


def service_of(store: OpsStore, *, inventory=None, fees=FEES, broker=None, **options):
    config = PaperExecutionConfig(
        max_notional=options.pop("max_notional", 1_000.0), inventory=inventory or FUNDED, **options
    )
    broker = broker or QuotePaperBroker(taker_fees=fees)
    executor = PaperExecutor(config, store=store, broker=broker, symbols=["BTC/USDT"])
    scanner = ArbitrageScanner(ArbitrageConfig(taker_fees=fees))
    return ArbitrageService(scanner, bus=InProcessBus(), market=MarketStore(store), executor=executor)


def run(service: ArbitrageService, quotes: list[TopOfBook]) -> list[dict]:
    async def go() -> list[dict]:
        await service.run(replay_tops(quotes))
        return [e for _, e in await service.bus.read(EXECUTIONS, group="t", consumer="t")]

    return asyncio.run(go())


def test_an_opening_sends_both_legs_through_the_order_states_at_the_quotes(store: OpsStore) -> None:
    book = WatchedBook(store, taker_fees=FEES)
    service = service_of(store, broker=book)
    published = run(service, [*OPEN, CLOSE])
    executor = service.executor
    assert executor is not None and executor.session_id is not None
    (row,) = MarketStore(store).opportunities(Page(), symbol="BTC/USDT")
    sid = executor.session_id
    buy_id, sell_id = leg_id(sid, row.id, OrderSide.BUY), leg_id(sid, row.id, OrderSide.SELL)
    # each create arrived after its order was committed as sent (never while new)
    assert book.seen == [(buy_id, "sent", True), (sell_id, "sent", True)]

    orders = {o.client_order_id: o for o in store.orders(sid)}
    assert set(orders) == {buy_id, sell_id}
    buy, sell = orders[buy_id], orders[sell_id]
    assert (buy.symbol, buy.side, buy.status, buy.venue) == ("a:BTC-USDT", "buy", "filled", "paper")
    assert (sell.symbol, sell.side, sell.status, sell.venue) == ("b:BTC-USDT", "sell", "filled", "paper")
    assert buy.quantity == sell.quantity == 0.5  # b's bid size: the thinner side
    fills = {f.symbol: f for f in store.fills(sid)}
    assert (fills["a:BTC-USDT"].price, fills["a:BTC-USDT"].quantity) == (100.0, 0.5)  # a's ask
    assert (fills["b:BTC-USDT"].price, fills["b:BTC-USDT"].quantity) == (101.0, 0.5)  # b's bid
    assert fills["a:BTC-USDT"].fee == pytest.approx(0.5 * 100 * 0.001)
    assert fills["b:BTC-USDT"].fee == pytest.approx(0.5 * 101 * 0.002)
    events = [(a.event, a.order_id) for a in store.audit_log(sid) if a.order_id is not None]
    assert events == [("order_decided", buy.id), ("order_decided", sell.id), ("order_filled", buy.id),
                      ("order_filled", sell.id)]  # fmt: skip

    pnl = (101 * 0.5 - 101 * 0.5 * 0.002) - (100 * 0.5 + 100 * 0.5 * 0.001)  # the spread less both fees
    (done,) = executor.executions()
    assert done["id"] == row.id and done["bought"] == done["sold"] == 0.5 and done["limited_by"] == "book"
    assert done["realised_net_profit"] == pytest.approx(pnl)
    assert done["realised_net_bps"] == pytest.approx(pnl / 50.0 * 1e4)
    assert done["predicted_net_bps"] == pytest.approx(done["realised_net_bps"])  # paper at the quotes: as predicted
    assert done["predicted_net_profit"] == pytest.approx(pnl)
    assert [e["kind"] for e in published] == ["executed"] and published[0]["realised_net_profit"] == pytest.approx(pnl)
    assert executor.balances() == {
        "a": {"USDT": pytest.approx(10_000 - 50 - 0.05), "BTC": 1.5},
        "b": {"USDT": pytest.approx(10_000 + 50.5 - 0.101), "BTC": 0.5},
    }
    (session,) = [s for s in store.sessions() if s.name == "arbitrage-paper"]
    assert (session.mode, session.strategy) == ("paper", "arbitrage")


def test_detection_only_by_default_sends_nothing(store: OpsStore) -> None:
    scanner = ArbitrageScanner(ArbitrageConfig(taker_fees=FEES))
    service = ArbitrageService(scanner, bus=InProcessBus(), market=MarketStore(store))
    assert asyncio.run(service.run(replay_tops([*OPEN, CLOSE]))) == 2  # opened and closed, stored
    assert len(MarketStore(store).opportunities(Page())) == 1
    assert store.sessions() == []
    with store.transaction() as db:
        assert db.scalars(select(Order)).all() == [] and db.scalars(select(Fill)).all() == []


def test_the_inventory_held_limits_the_sell_leg_then_skips(store: OpsStore) -> None:
    thin = {"a": {"USDT": 10_000.0}, "b": {"BTC": 0.2}}  # b holds 0.2 BTC to sell
    service = service_of(store, inventory=thin)
    reopen = [replace(q, ts=q.ts + 1_000) for q in OPEN]  # the same spread again, after the close
    run(service, [*OPEN, CLOSE, *reopen])
    executor = service.executor
    assert executor is not None and executor.session_id is not None
    first, second = MarketStore(store).opportunities(Page(), symbol="BTC/USDT")
    (done,) = executor.executions()
    assert done["id"] == first.id and done["sold"] == 0.2 and done["limited_by"] == "BTC held on b"
    assert executor.balances()["b"]["BTC"] == pytest.approx(0.0)
    (skipped,) = store.audit_log(executor.session_id, events=(SKIPPED,))
    assert skipped.detail["opportunity_id"] == second.id and skipped.detail["limited_by"] == "BTC held on b"
    assert len(store.orders(executor.session_id)) == 2  # nothing sent for the second: no BTC left on b
    assert all(f.quantity <= 0.2 for f in store.fills(executor.session_id) if f.side == "sell")


def test_the_cash_held_on_the_buy_venue_limits_the_buy_leg(store: OpsStore) -> None:
    service = service_of(store, inventory={"a": {"USDT": 30.0}, "b": {"BTC": 1.0}})
    run(service, OPEN)
    assert service.executor is not None
    (done,) = service.executor.executions()
    assert done["limited_by"] == "USDT held on a" and done["bought"] == pytest.approx(30.0 / (100 * 1.001))
    left = service.executor.balances()["a"]["USDT"]
    assert 0.0 <= left < 1e-8 * 100 * 1.001  # spent with its fee, to the amount step below it: never negative


def test_max_notional_caps_the_pair(store: OpsStore) -> None:
    service = service_of(store, max_notional=20.0)
    run(service, OPEN)
    assert service.executor is not None
    (done,) = service.executor.executions()
    assert done["limited_by"] == "max_notional" and done["buy_notional"] * (1 + FEES["a"]) == pytest.approx(20.0)
    assert done["buy_notional"] * (1 + FEES["a"]) <= 20.0  # at most max_notional, the fee included


def test_an_opening_executes_once_across_a_restart(store: OpsStore) -> None:
    first = service_of(store)
    run(first, OPEN)
    (row,) = MarketStore(store).opportunities(Page())
    again = first.scanner.open_opportunities()[0]
    assert first.executor is not None
    from tradeloop.arbitrage import ArbitrageEvent

    async def again_and_close():
        try:
            return await first.executor.execute(ArbitrageEvent(kind="opened", opportunity=again), opportunity_id=row.id)
        finally:
            await first.executor.close()

    assert asyncio.run(again_and_close()) is None
    restarted = service_of(store)  # a new process: new scanner, book and executor, the same database
    assert run(restarted, OPEN) == []  # the same quotes open the same opportunity: its legs are stored
    assert [r.id for r in MarketStore(store).opportunities(Page())] == [row.id]
    sid = restarted.executor.session_id if restarted.executor else None
    assert sid == first.executor.session_id
    assert len(store.orders(sid)) == 2 and len(store.fills(sid)) == 2
    assert len(store.audit_log(sid, events=(EXECUTED,))) == 1


def test_a_restart_resolves_legs_left_open_and_never_sends_them(store: OpsStore) -> None:
    crashed = service_of(store)
    executor = crashed.executor
    assert executor is not None
    scanner = crashed.scanner
    for q in OPEN:
        executor.on_quote(q)
    (event,) = [e for q in OPEN for e in scanner.update(q)]
    row_id = MarketStore(store).record(event)
    sid = asyncio.run(executor.start())
    _, _, orders = executor._decide(sid, event.opportunity, row_id)  # stored new ...
    with store.transaction() as db:
        mark_sent(db, orders[:1], now_ms=1)  # ... the buy leg marked sent; then the process died
    assert executor._locks is not None
    executor._locks.release()  # its locks die with it
    restarted = service_of(store)
    assert restarted.executor is not None
    asyncio.run(restarted.executor.start())
    statuses = {o.client_order_id: o.status for o in store.orders(sid)}
    assert statuses == {
        leg_id(sid, row_id, OrderSide.BUY): "expired",  # sent: only resolved (its quote is gone)
        leg_id(sid, row_id, OrderSide.SELL): "canceled",  # never sent
    }
    assert store.fills(sid) == []
    assert asyncio.run(restarted.executor.execute(event, opportunity_id=row_id)) is None  # never resent


class VenueBroker:
    """A broker that reaches a venue (what ``live.brokers.ccxt_broker`` is to the executor)."""

    venue = "binance"
    taker_fees = FEES

    async def submit(self, order): ...
    async def on_bar(self, batch, *, cash): ...
    async def recover(self, order, *, sent, since_ms): ...
    async def cancel(self, order): ...
    def is_dust(self, symbol, quantity): ...
    async def close(self): ...
    async def resolve(self, order, *, since_ms): ...
    async def open_orders(self, symbol): ...
    async def trades(self, symbol, *, after_trade_id): ...
    async def balances(self): ...
    async def assets(self, symbol): ...


@pytest.mark.parametrize("broker", [VenueBroker(), PaperBroker(fee_rate=0.001)], ids=["venue", "bar-paper"])
def test_a_broker_other_than_the_quote_paper_book_is_refused(store: OpsStore, broker) -> None:
    config = PaperExecutionConfig(max_notional=100.0, inventory=FUNDED)
    with pytest.raises(ConfigError, match="paper only"):
        PaperExecutor(config, store=store, broker=broker)


def test_a_live_session_of_the_same_name_is_refused(store: OpsStore) -> None:
    store.create_session(name="arbitrage-paper", strategy="sma", exchange="binance", timeframe="1h",
                         symbols=["BTC-USDT"], mode="live", init_cash=1.0, config={})  # fmt: skip
    service = service_of(store)
    with pytest.raises(ConfigError, match="is a live sma session"):
        run(service, OPEN)
    assert store.orders(store.session("arbitrage-paper").id) == []


def test_the_service_refuses_what_paper_execution_cannot_do(store: OpsStore) -> None:
    config = PaperExecutionConfig(max_notional=100.0, inventory=FUNDED)
    executor = PaperExecutor(config, store=store, broker=QuotePaperBroker(taker_fees=FEES))
    transfer = ArbitrageConfig(taker_fees=FEES, transfer=True, withdrawal_fees={"a": {"BTC": 0.0001}})
    with pytest.raises(ConfigError, match="set transfer=False"):
        ArbitrageService(ArbitrageScanner(transfer), bus=InProcessBus(), market=MarketStore(store), executor=executor)
    with pytest.raises(ConfigError, match="operational database"):
        ArbitrageService(ArbitrageScanner(ArbitrageConfig(taker_fees=FEES)), bus=InProcessBus(), market=None,
                         executor=executor)  # fmt: skip
    other = ArbitrageConfig(taker_fees={"a": 0.0, "b": 0.0})
    with pytest.raises(ConfigError, match="taker fees"):
        ArbitrageService(ArbitrageScanner(other), bus=InProcessBus(), market=MarketStore(store), executor=executor)


def test_the_recorded_binance_and_kraken_books_execute_at_their_quotes(store: OpsStore) -> None:
    binance, kraken = recorded()
    fees = {"binance": 0.0, "kraken": 0.0}
    funded = {"binance": {"USDT": 1e6}, "kraken": {"BTC": 10.0}}
    service = service_of(store, inventory=funded, fees=fees, max_notional=1e6)
    (done,) = run(service, [binance, kraken])
    assert service.executor is not None and service.executor.session_id is not None
    fills = {f.side: f for f in store.fills(service.executor.session_id)}
    assert (fills["buy"].price, fills["sell"].price) == (binance.ask, kraken.bid)
    size = min(binance.ask_size, kraken.bid_size)
    assert done["bought"] == done["sold"] == size
    assert done["realised_net_profit"] == pytest.approx(size * (kraken.bid - binance.ask))


def test_a_paused_session_trades_nothing_and_the_heartbeat_follows_the_service(store: OpsStore) -> None:
    service = service_of(store)
    assert service.executor is not None
    sid = asyncio.run(service.executor.start())
    assert store.session("arbitrage-paper").heartbeat_at is not None  # alive while it runs
    store.set_status("arbitrage-paper", "paused")
    assert run(service, OPEN) == []
    assert len(MarketStore(store).opportunities(Page())) == 1  # detected and stored all the same
    assert store.orders(sid) == [] and store.session("arbitrage-paper").heartbeat_at is None  # ended: cleared
    store.set_status("arbitrage-paper", "running")
    later = [replace(q, ts=q.ts + 5_000) for q in OPEN]  # a new service, a new opening
    assert [e["kind"] for e in run(service_of(store), later)] == ["executed"]
    assert len(store.orders(sid)) == 2
