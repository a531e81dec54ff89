"""The event bus: Redis streams on the real server, and the in-process default, alike."""

from __future__ import annotations

import asyncio

import polars as pl
import pytest
import redis

from live.bus import InProcessBus, RedisBus
from live.runner import SessionConfig, run_session
from tests.conftest import REDIS_URL
from tests.live.conftest import SYMBOLS, World, make_settings


@pytest.fixture(params=["redis", "in-process"])
def make(request):
    """A factory of bus clients sharing one bus (one Redis prefix, or one in-process bus)."""
    if request.param == "redis":
        prefix = request.getfixturevalue("redis_prefix")
        return lambda **kw: RedisBus(REDIS_URL, prefix=prefix, **kw)
    shared: dict[str, InProcessBus] = {}
    return lambda **kw: shared.setdefault("bus", InProcessBus(**kw))


def test_consumer_groups_deliver_each_event_once_per_group_until_acked(make) -> None:
    async def scenario() -> None:
        bus = make()
        ids = [await bus.publish("orders", {"n": n}) for n in range(5)]
        first = await bus.read("orders", group="dashboard", consumer="a", count=3)
        rest = await bus.read("orders", group="dashboard", consumer="b", count=10)
        assert [e["n"] for _, e in first] == [0, 1, 2] and [e["n"] for _, e in rest] == [3, 4]
        assert await bus.read("orders", group="dashboard", consumer="a") == []
        audit = await bus.read("orders", group="audit", consumer="x", count=10)  # a second group sees all
        assert [event_id for event_id, _ in audit] == ids
        await bus.ack("orders", "dashboard", *[i for i, _ in first + rest])
        await bus.set_prices({"BTC-USD": (101.5, 1700000000000)})
        assert await bus.price("BTC-USD") == (101.5, 1700000000000)
        assert await bus.price("ETH-USD") is None
        await bus.close()

    asyncio.run(scenario())


def test_unacked_events_are_redelivered_then_dead_lettered(make) -> None:
    async def scenario() -> None:
        bus = make(claim_idle_ms=600, max_deliveries=2)
        event_id = await bus.publish("fills", {"trade_id": "T1"})
        await bus.publish("fills", {"trade_id": "T2"})
        first = await bus.read("fills", group="ledger", consumer="a", count=1)  # a dies without acking
        assert first == [(event_id, {"trade_id": "T1"})]
        assert await bus.read("fills", group="ledger", consumer="b", count=1) != first  # not idle yet: T2
        await asyncio.sleep(0.7)
        again = await bus.read("fills", group="ledger", consumer="b", count=1)  # delivery 2, to b
        assert again == first
        await asyncio.sleep(0.7)
        assert [e["trade_id"] for _, e in await bus.read("fills", group="ledger", consumer="b")] == ["T2"]
        await asyncio.sleep(0.7)
        assert await bus.read("fills", group="ledger", consumer="b") == []  # both past 2 deliveries
        dead = await bus.read("fills:dead", group="ops", consumer="x")
        assert [(e["id"], e["group"], e["event"]["trade_id"]) for _, e in dead][0] == (event_id, "ledger", "T1")
        assert len(dead) == 2
        await bus.close()

    asyncio.run(scenario())


def test_engine_publishes_to_redis_streams(trained_world: World, redis_prefix: str) -> None:
    settings = make_settings(trained_world.root, REDIS_URL=REDIS_URL, TRADELOOP_REDIS_PREFIX=redis_prefix)
    start = int(trained_world.candles.filter(pl.col("symbol") == SYMBOLS[0])["ts"][-200])
    engine = asyncio.run(run_session(settings, SessionConfig(name="redis-bus", start=start)))
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    assert client.xlen(f"{redis_prefix}:candles") == engine.bars == 200
    orders = engine.store.orders(engine.session.id)
    assert client.xlen(f"{redis_prefix}:orders") == len(orders) > 0
    assert client.xlen(f"{redis_prefix}:fills") == len(engine.store.fills(engine.session.id))
    assert client.xlen(f"{redis_prefix}:signals") > 0
    last = trained_world.candles.filter(pl.col("symbol") == "ETH-USD").sort("ts").tail(1)
    assert client.hget(f"{redis_prefix}:prices", "coinbase:ETH-USD") == f"[{last['close'][0]}, {last['ts'][0]}]"
