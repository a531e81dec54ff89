"""Capital slices of a live session on a venue (``live.slice_venue``, ``live.slices``): an 80/20
split on the loopback Binance spot venue through the real ccxt client, one account the books
share. Each book's orders go out with its own client ids and their fills go to that book, also
when a restart recovers an order from the venue; the balances are compared with the sum of the
books; a slice's protective stop is its own, and closing the slice cancels it."""

from __future__ import annotations

import asyncio
import copy
import dataclasses
from collections.abc import Callable
from pathlib import Path

import pytest
from exchange_server import BinanceLoopback

from live.brokers.base import OrderRequest
from live.bus import make_bus
from live.engine import EngineConfig, LiveEngine
from live.models import ModelSlot
from live.orders import request_of
from live.runner import SessionConfig, backtest_config, open_session
from tests.live.conftest import World
from tests.live.test_venue_protection import PAIR, list_native_stops
from tests.live.venue_session import START, SYMBOL, broker_on, run_bars, venue_settings
from tradeloop.challengers.evidence import ChallengerStore
from tradeloop.errors import ConfigError
from tradeloop.ops import Fill, OpsStore, Order
from tradeloop.registry import ModelRegistry

SHARE, CASH = 0.2, 10_000.0


class Crash(Exception):
    """The engine process dies here: nothing after this point of its bar runs."""


def _challenger(world: World, tmp: Path) -> str:
    """The champion's model with a lower bar: it enters where the champion does not."""
    registry = ModelRegistry(world.settings.registry_dir)
    _, model = registry.load("sma_cross")
    estimator = copy.copy(model.estimator)
    estimator.threshold_ = model.estimator.threshold_ - 0.01
    return registry.register(dataclasses.replace(model, estimator=estimator).save(tmp / "challenger"))


def _engine(settings, server: BinanceLoopback, name: str, **spec: object) -> LiveEngine:
    store = OpsStore.open(settings.effective_database_url)
    registry = ModelRegistry(settings.registry_dir)
    config = SessionConfig(
        name=name, exchange="binance", symbols=(SYMBOL,), timeframe="1m", mode="live", start=START,
        allow_in_sample=True, init_cash=CASH, **spec,
    )  # fmt: skip
    session = open_session(store, registry, config)
    return LiveEngine(
        store=store, session=session, broker=broker_on(server), bus=make_bus(None),
        slot=ModelSlot.for_session(registry, session), backtest=backtest_config(session),
        config=EngineConfig(venue_check_every_bars=1, publish=False),
    )  # fmt: skip


def _split(settings, server, name: str, artifact: str, **kw) -> LiveEngine:
    engine = _engine(settings, server, name, **kw)
    ChallengerStore(engine.store).add(
        engine.session, artifact, registry=ModelRegistry(settings.registry_dir), capital_share=SHARE
    )
    return engine


def _run(engine: LiveEngine, scenario: Callable) -> None:
    async def main() -> None:
        try:
            await scenario(engine)
        finally:
            await engine.broker.close()

    asyncio.run(main())


def _fills(engine: LiveEngine, book: str | None) -> list[tuple[Fill, Order]]:
    with engine.store.transaction() as db:
        rows = db.query(Fill, Order).join(Order, Order.id == Fill.order_id).filter(Fill.session_id == engine.session.id)
        return [(f, o) for f, o in rows if o.capital_slice == book]


def _held(fills: list[tuple[Fill, Order]]) -> float:
    return sum((1 if f.side == "buy" else -1) * f.quantity for f, _ in fills)


def _slice_held(engine: LiveEngine, artifact: str) -> float:
    s = engine.slices.slices.get(artifact)
    return 0.0 if s is None else s.positions().get(SYMBOL, 0.0)


def _events(engine: LiveEngine, name: str) -> list:
    return engine.store.audit_log(engine.session.id, events=(name,))


def _prefix(engine: LiveEngine, artifact: str) -> str:
    [row] = [r for r in ChallengerStore(engine.store).rows(engine.session.id) if r.artifact == artifact]
    return f"tl{engine.session.id}c{row.id}-"


def _assert_books(engine: LiveEngine, server: BinanceLoopback, artifact: str) -> None:
    """Each book holds exactly its own fills; the venue holds the sum of the books."""
    [row] = [r for r in ChallengerStore(engine.store).rows(engine.session.id) if r.artifact == artifact]
    book = engine.slices.slices[artifact].portfolio
    mine, champions = _fills(engine, artifact), _fills(engine, None)
    assert _slice_held(engine, artifact) == pytest.approx(_held(mine), abs=1e-12)
    assert engine.positions.get(SYMBOL, 0.0) == pytest.approx(_held(champions), abs=1e-12)
    [stored] = [p for p in engine.store.position_rows(engine.session.id) if p.symbol == SYMBOL] or [None]
    assert (stored.quantity if stored else 0.0) == pytest.approx(_held(champions), abs=1e-12)  # the champion's row
    spent = sum((1 if f.side == "buy" else -1) * f.quantity * f.price + f.fee for f, _ in mine)
    assert book.cash == pytest.approx(row.slice_cash - spent, rel=1e-12)
    assert server.balances["BTC"] == pytest.approx(_held(mine) + _held(champions), abs=1e-9)
    assert server.balances["BUSD"] == pytest.approx(engine.cash + book.cash, abs=1e-6)


def test_an_80_20_live_split_sends_each_books_orders_with_its_ids_and_fills_each_book(
    own_world: World, tmp_path: Path
) -> None:
    """Both books trade the one account (the venue checks its funds): the slice's orders carry
    its prefix and its tag, each create reached the venue once, each book holds exactly its own
    fills (the champion's ``positions`` row none of the slice's), each book's first entry is its
    share's. The balances, checked every bar, match the sum of the books while the slice holds
    a position (no drift); coins no book holds are a drift."""
    name, artifact = "venue-split", _challenger(own_world, tmp_path)
    with BinanceLoopback(candles={}, prices={PAIR: 17_200.0}, balances={"BUSD": CASH}, check_balances=True) as server:
        settings = venue_settings(own_world, server, f"sqlite:///{tmp_path / 'ops.db'}")
        engine = _split(settings, server, name, artifact)

        def traded(e: LiveEngine) -> bool:
            sold = any(f.side == "sell" for f, _ in _fills(e, artifact))
            return sold and bool(_fills(e, None)) and _slice_held(e, artifact) > 0

        async def scenario(e: LiveEngine) -> None:
            await e.reconcile()
            await run_bars(e, settings, name, until=traded)
            await run_bars(e, settings, name, until=lambda e: not e.store.orders(e.session.id, statuses=("sent",
                           "acknowledged", "partially_filled")), limit=3)  # fmt: skip
            assert not _events(e, "balance_drift"), [d.detail for d in _events(e, "balance_drift")]
            _assert_books(e, server, artifact)
            server.balances["BTC"] += 0.05  # coins no book holds
            await run_bars(e, settings, name, until=lambda e: e.store.session(name).needs_ack, limit=2)

        _run(engine, scenario)

        [drift] = _events(engine, "balance_drift")
        assert list(drift.detail) == ["BTC"] and drift.detail["BTC"]["off_by"] == pytest.approx(0.05, abs=1e-9)
        orders = engine.store.orders(engine.session.id)
        prefix = _prefix(engine, artifact)
        slices = [o for o in orders if o.capital_slice == artifact]
        champions = [o for o in orders if o.capital_slice is None]
        assert slices and champions
        assert all(o.client_order_id.startswith(prefix) for o in slices)
        assert not any(o.client_order_id.startswith(prefix) for o in champions)
        for o in slices + champions:  # each on the venue under its own id, created once
            assert server.creates[o.client_order_id] == 1
            assert server.orders[o.client_order_id]["status"] == "FILLED" == o.status.upper()
        first = min((o for o in slices if o.intent == "enter_long"), key=lambda o: o.decided_ts)
        assert first.quote_amount == pytest.approx(0.5 * SHARE * CASH)  # fraction 0.5 of the slice's 2,000
        first = min((o for o in champions if o.intent == "enter_long"), key=lambda o: o.decided_ts)
        assert first.quote_amount == pytest.approx(0.5 * (1 - SHARE) * CASH)


def _crash_after_sending(settings, server: BinanceLoopback, name: str, artifact: str, *, book: str | None):
    """Run a split session until ``book``'s first entry (None: the champion's) has gone to the
    venue, then die before its answer is stored; the request that went out."""
    lost: list[OrderRequest] = []

    async def until_the_crash(e: LiveEngine) -> None:
        submit = e._submit

        async def submitted(order: Order):
            if order.capital_slice != book or order.intent != "enter_long":
                return await submit(order)
            lost.append(request_of(order))
            await e.broker.submit(lost[-1])
            raise Crash

        e._submit = submitted  # type: ignore[method-assign]
        await e.reconcile()
        with pytest.raises(Crash):
            await run_bars(e, settings, name, until=lambda e: False)

    _run(_split(settings, server, name, artifact), until_the_crash)
    [request] = lost
    return request


def test_a_slice_order_lost_between_send_and_answer_is_recovered_into_the_slice_never_resent(
    own_world: World, tmp_path: Path
) -> None:
    """The engine dies after the venue took and filled the slice's entry, before its answer was
    stored. The restarted engine resolves it from the venue (never a second create) and its fill
    goes to the slice's book, not the champion's; the balance checks after it find no drift."""
    name, artifact = "venue-split-restart", _challenger(own_world, tmp_path)
    with BinanceLoopback(candles={}, prices={PAIR: 17_200.0}, balances={"BUSD": CASH}, check_balances=True) as server:
        settings = venue_settings(own_world, server, f"sqlite:///{tmp_path / 'ops.db'}")
        request = _crash_after_sending(settings, server, name, artifact, book=artifact)
        assert server.orders[request.client_order_id]["status"] == "FILLED"

        restarted = _engine(settings, server, name)

        async def after(e: LiveEngine) -> None:
            champion_before = _champion_held(e)  # as the crash left it
            await e.reconcile()
            assert _slice_held(e, artifact) == pytest.approx(
                float(server.orders[request.client_order_id]["executedQty"])
            )
            assert _champion_held(e) == pytest.approx(champion_before, abs=1e-12)
            await run_bars(e, settings, name, until=lambda e: e.bars >= 3, limit=3)

        _run(restarted, after)
        assert server.creates[request.client_order_id] == 1
        [order] = [
            o for o in restarted.store.orders(restarted.session.id) if o.client_order_id == request.client_order_id
        ]
        assert order.status == "filled" and order.capital_slice == artifact
        assert _events(restarted, "order_reconciled")
        assert not _events(restarted, "balance_drift") and not _events(restarted, "symbol_halted")
        _assert_books(restarted, server, artifact)


def test_a_champion_fill_recovered_outside_a_bar_is_stored_with_its_cash(own_world: World, tmp_path: Path) -> None:
    """A fill applied outside the bar's transaction (here a restart's recovery) is never applied
    again (its trade id is stored), so the champion's cash must be stored with it: an engine that
    dies right after the recovery, before any bar, comes back with the cash the fill left."""
    name, artifact = "venue-split-cash", _challenger(own_world, tmp_path)
    with BinanceLoopback(candles={}, prices={PAIR: 17_200.0}, balances={"BUSD": CASH}, check_balances=True) as server:
        settings = venue_settings(own_world, server, f"sqlite:///{tmp_path / 'ops.db'}")
        request = _crash_after_sending(settings, server, name, artifact, book=None)
        assert server.orders[request.client_order_id]["status"] == "FILLED"
        recovered: dict[str, float] = {}

        async def recover_then_die(e: LiveEngine) -> None:
            before = e.cash
            await e.reconcile()  # the champion's fill, from the venue, outside any bar
            recovered["cash"] = e.cash
            assert recovered["cash"] < before - 1.0  # the entry spent the champion's cash

        _run(_engine(settings, server, name), recover_then_die)
        again = _engine(settings, server, name)
        assert again.cash == pytest.approx(recovered["cash"], rel=1e-12)
        assert server.creates[request.client_order_id] == 1


def _champion_held(engine: LiveEngine) -> float:
    """The champion's position as its ``positions`` row stores it."""
    return sum(p.quantity for p in engine.store.position_rows(engine.session.id) if p.symbol == SYMBOL)


def test_a_slices_stop_is_its_own_and_closing_the_slice_cancels_it(own_world: World, tmp_path: Path) -> None:
    """``stop_loss`` legs, native on the venue: the slice's entry's stop goes out under the slice's
    prefix, tagged with it, for the slice's filled quantity, and lives while the slice holds
    its position (its book's, not the champion's: flat then). The challenger retired, its
    slice closes: its stop canceled on the venue before the flatten sells its coins, its
    cash back to the champion; the champion's legs stay."""
    name, artifact = "venue-split-stops", _challenger(own_world, tmp_path)
    with BinanceLoopback(candles={}, prices={PAIR: 17_200.0}, balances={"BUSD": CASH}, check_balances=True) as server:
        list_native_stops(server)
        settings = venue_settings(own_world, server, f"sqlite:///{tmp_path / 'ops.db'}")
        engine = _split(settings, server, name, artifact, orders={"stop_loss": 0.05})

        def stop_of(e: LiveEngine) -> Order | None:
            legs = [o for o in e.store.orders(e.session.id) if o.capital_slice == artifact and o.intent == "stop_loss"]
            return next((o for o in legs if o.status == "acknowledged"), None)

        async def scenario(e: LiveEngine) -> None:
            await e.reconcile()
            # a bar where the slice's stop protects its position while the champion holds none
            await run_bars(e, settings, name, until=lambda e: stop_of(e) and not e.positions.get(SYMBOL))
            stop = stop_of(e)
            assert stop is not None
            entry = next(o for o in e.store.orders(e.session.id) if o.id == stop.parent_id)
            assert stop.client_order_id.startswith(_prefix(e, artifact)) and entry.capital_slice == artifact
            assert stop.quantity == pytest.approx(entry.filled_qty) == pytest.approx(_slice_held(e, artifact))
            assert server.orders[stop.client_order_id]["type"] == "STOP_LOSS"
            assert server.orders[stop.client_order_id]["status"] == "NEW"
            champion_legs = {o.client_order_id for o in _open_legs(e) if o.capital_slice is None}
            ChallengerStore(e.store).retire(e.session.id, artifact, actor="test")
            await run_bars(e, settings, name, until=lambda e: artifact not in e.slices.slices, limit=5)
            assert server.orders[stop.client_order_id]["status"] == "CANCELED"
            [after] = [o for o in e.store.orders(e.session.id) if o.id == stop.id]
            assert after.status == "canceled"
            still = {o.client_order_id for o in _open_legs(e) if o.capital_slice is None}
            assert champion_legs <= still | {o.client_order_id for o in _filled_exits(e)}

        _run(engine, scenario)
        flattens = [
            o for o in engine.store.orders(engine.session.id) if o.capital_slice == artifact and o.intent == "flatten"
        ]
        assert flattens and all(o.status == "filled" for o in flattens)
        assert not [o for o in _open_legs(engine) if o.capital_slice == artifact]
        closing = engine.store.audit_log(engine.session.id, events=("slice_closing", "slice_closed"))
        assert [e.event for e in closing] == ["slice_closing", "slice_closed"]
        assert server.balances["BTC"] == pytest.approx(engine.positions.get(SYMBOL, 0.0), abs=1e-9)
        assert server.balances["BUSD"] == pytest.approx(engine.cash, abs=1e-6)  # the champion holds it all again


def _open_legs(engine: LiveEngine) -> list[Order]:
    return [o for o in engine.store.orders(engine.session.id)
            if o.parent_id is not None and o.status in ("new", "sent", "acknowledged", "cancel_requested")]  # fmt: skip


def _filled_exits(engine: LiveEngine) -> list[Order]:
    return [o for o in engine.store.orders(engine.session.id) if o.parent_id is not None and o.status == "filled"]


def test_each_book_spends_only_its_own_cash_on_the_shared_account(own_world: World, tmp_path: Path) -> None:
    """``fraction=1``: each book's entry asks for its whole equity, which with the venue's 0.1%
    commission is more than the book holds. Each is cut to its own cash (``live.slice_venue``
    rule 3): the slice's to 2,000 / 1.001, the champion's to 8,000 / 1.001, so neither takes the
    other's money on the one account and no book's cash goes below zero."""
    name, artifact = "venue-split-cash", _challenger(own_world, tmp_path)
    with BinanceLoopback(candles={}, prices={PAIR: 17_200.0}, balances={"BUSD": CASH}, check_balances=True) as server:
        settings = venue_settings(own_world, server, f"sqlite:///{tmp_path / 'ops.db'}")
        engine = _split(settings, server, name, artifact, fraction=1.0, fee_rate=0.001)
        low: list[float] = []

        def entered(e: LiveEngine) -> bool:
            low.append(min(e.cash, *(c for _, c, _ in e.slices.holdings())))
            return bool(_slice_held(e, artifact)) and bool(e.positions.get(SYMBOL))

        async def scenario(e: LiveEngine) -> None:
            await e.reconcile()
            await run_bars(e, settings, name, until=entered)

        _run(engine, scenario)
        orders = engine.store.orders(engine.session.id)
        assert not [o for o in orders if o.status == "rejected"]
        entries = {o.capital_slice: o for o in sorted(orders, key=lambda o: -o.id) if o.intent == "enter_long"}
        assert entries[artifact].quote_amount == pytest.approx(SHARE * CASH / 1.001, rel=1e-12)
        assert entries[None].quote_amount == pytest.approx((1 - SHARE) * CASH / 1.001, rel=1e-12)
        assert min(low) >= -1e-9
        _assert_books(engine, server, artifact)


def test_a_live_split_is_refused_on_derivatives_and_allowed_on_one_spot_venue(own_world: World, tmp_path: Path) -> None:
    """Naming a share on a live spot session is accepted; on perpetuals or several venues it is
    refused with the field, the value and the fix (``tradeloop.challengers.slices`` rule 4)."""
    artifact = _challenger(own_world, tmp_path)
    with BinanceLoopback(candles={}, prices={PAIR: 17_200.0}, balances={"BUSD": CASH}) as server:
        settings = venue_settings(own_world, server, f"sqlite:///{tmp_path / 'ops.db'}")
        engine = _split(settings, server, "venue-split-named", artifact)
        asyncio.run(engine.broker.close())
        assert engine.slices.broker is engine.broker  # the engine trades the split
        session = engine.session
        registry = ModelRegistry(settings.registry_dir)
        session.symbols = ["BTC/USDT:USDT"]
        with pytest.raises(ConfigError, match=r"capital_share=0.2: live session on binance trades derivatives"):
            ChallengerStore(engine.store).add(session, artifact, registry=registry, capital_share=SHARE)
