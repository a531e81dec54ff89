"""On a venue the risk engine reads the market's minimums from ccxt's loaded markets: an entry
worth less than BTCBUSD's MIN_NOTIONAL (10 BUSD in the recorded exchangeInfo) is denied by
rule ``min_notional`` before anything is stored or sent; the venue never sees it."""

from __future__ import annotations

import asyncio

import pytest
from exchange_server import BinanceLoopback

from live.bus import make_bus
from live.engine import EngineConfig, LiveEngine
from live.models import ModelSlot
from live.runner import backtest_config, open_session
from tests.live.conftest import World
from tests.live.venue_session import broker_on, run_bars, session_config, venue_settings
from tradeloop.ops import OpsStore
from tradeloop.registry import ModelRegistry


def test_an_entry_below_the_markets_minimum_notional_is_denied_and_never_sent(trained_world: World, tmp_path) -> None:
    with BinanceLoopback(candles={}, prices={"BTCBUSD": 17_200.0}, balances={"BUSD": 10_000.0}) as server:
        settings = venue_settings(trained_world, server, f"sqlite:///{tmp_path / 'ops.db'}")
        store = OpsStore.open(settings.effective_database_url)
        registry = ModelRegistry(settings.registry_dir)
        config = session_config("tiny").model_copy(update={"fraction": 0.0005})  # 5 BUSD of 10,000
        session = open_session(store, registry, config)
        engine = LiveEngine(
            store=store, session=session, broker=broker_on(server), bus=make_bus(None),
            slot=ModelSlot.for_session(registry, session), backtest=backtest_config(session),
            config=EngineConfig(venue_check_every_bars=1, publish=False),
        )  # fmt: skip

        def denied(e: LiveEngine) -> list:
            return [a for a in e.store.audit_log(e.session.id) if a.event == "risk_denied"]

        async def scenario() -> None:
            try:
                await run_bars(engine, settings, "tiny", until=denied)
            finally:
                await engine.broker.close()

        asyncio.run(scenario())
        [row] = denied(engine)[:1]
        assert row.detail["rule"] == "min_notional" and row.detail["limit"] == pytest.approx(10.0)
        assert row.detail["value"] == pytest.approx(0.0005 * 10_000.0, rel=0.05)  # about 5 BUSD asked
        assert engine.store.orders(engine.session.id) == []
        assert server.calls("POST", "/api/v3/order") == []  # the venue never saw it
