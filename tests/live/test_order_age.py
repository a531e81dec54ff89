"""The order manager cancels an order left resting past its maximum age (bar time) on the
loopback Binance venue through real ccxt: ``cancel_requested`` is committed (and audited)
before the cancel goes out, the venue's answer ends it ``canceled`` with the fills it had,
and an order younger than the limit is left alone."""

from __future__ import annotations

import asyncio

import pytest
from exchange_server import BinanceLoopback

from live.engine import EngineConfig
from tests.live.conftest import World
from tests.live.venue_session import run_bars, venue_engine, venue_settings

AGE_MS = 5 * 60_000  # five 1m bars


def test_a_resting_order_is_canceled_after_its_maximum_age_with_its_partial_fill(
    trained_world: World, tmp_path
) -> None:
    with BinanceLoopback(
        candles={}, prices={"BTCBUSD": 17_200.0}, hold_orders=True, balances={"BUSD": 10_000.0}
    ) as server:
        settings = venue_settings(trained_world, server, f"sqlite:///{tmp_path / 'ops.db'}")
        engine = venue_engine(settings, server, "aged", every_bars=1)
        engine.config = engine.config.model_copy(update={"max_order_age_ms": AGE_MS})
        assert isinstance(engine.config, EngineConfig)

        def buy():
            return next(o for o in engine.store.orders(engine.session.id) if o.side == "buy")

        async def scenario() -> None:
            try:
                await run_bars(engine, settings, "aged", until=lambda e: e.store.orders(e.session.id))
                server.fill_held(part=0.25)  # a quarter trades; the rest keeps resting
                decided = buy().decided_ts
                await run_bars(engine, settings, "aged", until=lambda e: e.session.last_bar_ts - decided >= AGE_MS)
                assert buy().status in ("acknowledged", "partially_filled")  # not older than the limit yet
                await run_bars(engine, settings, "aged", until=lambda e: buy().status == "canceled", limit=2)
            finally:
                await engine.broker.close()

        asyncio.run(scenario())
        order = buy()
        assert order.status == "canceled"
        assert order.filled_qty == pytest.approx(float(server.orders[order.client_order_id]["executedQty"]))
        assert server.orders[order.client_order_id]["status"] == "CANCELED"
        assert engine.positions["BTC-BUSD"] == pytest.approx(order.filled_qty)
        events = [a.event for a in engine.store.audit_log(engine.session.id) if a.order_id == order.id]
        assert events.index("order_cancel_requested") < events.index("order_canceled")
        assert len(engine.store.fills(engine.session.id)) == 1
