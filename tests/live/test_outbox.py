"""The transactional outbox: events commit with their bar and reach the bus exactly once,
whether Redis goes away mid-run (a TCP proxy of our own, cut and restored) or the relay dies
between publishing and recording that it did."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from datetime import timedelta

import polars as pl
import pytest
import redis
from sqlalchemy import select

from live.bus import InProcessBus, RedisBus
from live.engine import EngineConfig
from live.outbox import OutboxRelay
from live.runner import SessionConfig, build_engine, replay_feed
from tests.conftest import REDIS_URL
from tests.live.conftest import SYMBOLS, World, make_settings
from tests.live.tcp_proxy import TcpProxy
from tradeloop.ops import OpsStore
from tradeloop.ops.models import OutboxEvent, utcnow

STREAMS = ("candles", "signals", "orders", "fills")


async def until(condition: Callable[[], bool], *, what: str, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


def outbox_rows(store: OpsStore, session_id: int) -> list[OutboxEvent]:
    with store.transaction() as db:
        return list(
            db.scalars(select(OutboxEvent).where(OutboxEvent.session_id == session_id).order_by(OutboxEvent.id))
        )


@pytest.fixture(params=["redis", "in-process"])
def bus_and_entries(request):
    """A bus and a function reading back every entry of a stream (id order) from its storage."""
    if request.param == "in-process":
        bus = InProcessBus()
        return bus, lambda stream: [e for _, e in bus.events[stream]]
    prefix = request.getfixturevalue("redis_prefix")
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    return RedisBus(REDIS_URL, prefix=prefix), lambda stream: [
        json.loads(f["data"]) for _, f in client.xrange(f"{prefix}:{stream}")
    ]


def test_a_relay_that_dies_between_publishing_and_marking_repeats_nothing(tmp_path, bus_and_entries) -> None:
    bus, entries = bus_and_entries
    store = OpsStore.open(f"sqlite:///{tmp_path / 'ops.db'}")
    session = store.create_session(
        name="s",
        strategy="sma_cross",
        exchange="coinbase",
        timeframe="4h",
        symbols=["BTC-USD"],
        mode="paper",
        init_cash=1000.0,
        config={},
    )
    with store.transaction() as db:
        for n in range(5):
            OpsStore.add_event(db, "orders" if n % 2 else "candles", {"n": n}, session_id=session.id)

    async def scenario() -> None:
        first = OutboxRelay(store, bus, session_id=session.id, mark="s-1")
        await first.publish(store.unrelayed_events(session.id)[:3])  # ... and dies before marking them
        assert len(store.unrelayed_events(session.id)) == 5
        again = OutboxRelay(store, bus, session_id=session.id, mark="s-1")  # the restarted engine's relay
        assert await again.relay() == 5
        assert await again.relay() == 0
        await bus.close()

    asyncio.run(scenario())
    assert entries("candles") == [{"n": 0}, {"n": 2}, {"n": 4}]
    assert entries("orders") == [{"n": 1}, {"n": 3}]
    assert store.unrelayed_events(session.id) == []


def test_relayed_rows_are_pruned_after_keep_s_and_unrelayed_ones_never(tmp_path) -> None:
    store = OpsStore.open(f"sqlite:///{tmp_path / 'ops.db'}")
    session = store.create_session(
        name="s",
        strategy="sma_cross",
        exchange="coinbase",
        timeframe="4h",
        symbols=["BTC-USD"],
        mode="paper",
        init_cash=1000.0,
        config={},
    )
    with store.transaction() as db:
        for n in range(3):
            OpsStore.add_event(db, "candles", {"n": n}, session_id=session.id)
    store.mark_relayed([outbox_rows(store, session.id)[0].id])
    # keep_s=-1: everything relayed is past its keeping time
    relay = OutboxRelay(store, InProcessBus(), session_id=session.id, mark="m", keep_s=-1.0, batch=2)
    assert asyncio.run(relay.relay()) == 2  # rows 2 and 3, in batches of 2; then the prune
    assert outbox_rows(store, session.id) == []
    with store.transaction() as db:
        OpsStore.add_event(db, "candles", {"n": 9}, session_id=session.id)
    assert store.prune_outbox(relayed_before=utcnow() + timedelta(days=1)) == 0
    assert [r.payload for r in outbox_rows(store, session.id)] == [{"n": 9}]


def test_events_after_a_prune_of_every_relayed_row_still_reach_the_bus(tmp_path, bus_and_entries) -> None:
    """An engine restarted after keep_s prunes every relayed row, the newest included. New rows
    must not reuse those ids: the bus's mark would take them as repeats and drop them, while
    the relay stamped them relayed (SQLite reuses the highest rowid without AUTOINCREMENT)."""
    bus, entries = bus_and_entries
    store = OpsStore.open(f"sqlite:///{tmp_path / 'ops.db'}")
    session = store.create_session(
        name="s",
        strategy="sma_cross",
        exchange="coinbase",
        timeframe="4h",
        symbols=["BTC-USD"],
        mode="paper",
        init_cash=1000.0,
        config={},
    )

    def add(day: str) -> None:
        with store.transaction() as db:
            for n in range(3):
                OpsStore.add_event(db, "candles", {"day": day, "n": n}, session_id=session.id)

    async def scenario() -> None:
        add("one")
        assert await OutboxRelay(store, bus, session_id=session.id, mark="s-1").relay() == 3
        restarted = OutboxRelay(store, bus, session_id=session.id, mark="s-1", keep_s=-1.0)
        assert await restarted.relay() == 0 and outbox_rows(store, session.id) == []  # all pruned
        add("three")
        assert await OutboxRelay(store, bus, session_id=session.id, mark="s-1").relay() == 3
        await bus.close()

    asyncio.run(scenario())
    assert entries("candles") == [{"day": d, "n": n} for d in ("one", "three") for n in range(3)]


@pytest.fixture
def redis_proxy() -> TcpProxy:
    proxy = TcpProxy(6379).start()
    yield proxy
    proxy.close()


def test_redis_cut_mid_run_the_engine_trades_on_and_every_event_arrives_once(
    trained_world: World, redis_prefix: str, redis_proxy: TcpProxy
) -> None:
    settings = make_settings(
        trained_world.root,
        REDIS_URL=f"redis://127.0.0.1:{redis_proxy.port}/0",
        TRADELOOP_REDIS_PREFIX=redis_prefix,
        DATABASE_URL=f"sqlite:///{trained_world.root / f'{redis_prefix}.db'}",
    )
    start = int(trained_world.candles.filter(pl.col("symbol") == SYMBOLS[0])["ts"][-400])
    # paced (4 h bars at 50 per second) so that Redis is back while the replay still runs
    config = SessionConfig(name="redis-cut", start=start, speed=4 * 3600 * 50)
    engine = build_engine(settings, config, engine_config=EngineConfig(bus_retry_base_s=0.05, bus_retry_cap_s=0.3))

    async def scenario() -> int:
        run = asyncio.create_task(engine.run(replay_feed(settings, config)))
        await until(lambda: engine.relay.relayed >= 50 or run.done(), what="50 events relayed")
        redis_proxy.cut()
        bars_at_cut = engine.bars
        await until(lambda: engine.bars >= bars_at_cut + 100 or run.done(), what="100 bars without Redis")
        assert not run.done() and engine.relay.failures >= 1
        backlog = len(engine.store.unrelayed_events(engine.session.id, limit=10_000))
        assert backlog >= 100  # the events wait in the outbox: at least one candle per bar
        redis_proxy.restore()
        await asyncio.wait_for(run, timeout=300)
        return backlog

    asyncio.run(scenario())
    rows = outbox_rows(engine.store, engine.session.id)
    assert rows and all(r.relayed_at is not None for r in rows)
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    for stream in STREAMS:  # every event once, in commit order
        published = [json.loads(f["data"]) for _, f in client.xrange(f"{redis_prefix}:{stream}")]
        assert published == [r.payload for r in rows if r.stream == stream], stream
    assert client.xlen(f"{redis_prefix}:candles") == engine.bars == 400
    assert client.xlen(f"{redis_prefix}:fills") == len(engine.store.fills(engine.session.id)) > 0
    last = trained_world.candles.filter(pl.col("symbol") == "ETH-USD").sort("ts").tail(1)
    assert client.hget(f"{redis_prefix}:prices", "coinbase:ETH-USD") == f"[{last['close'][0]}, {last['ts'][0]}]"


@pytest.fixture
def full_redis():
    """A Redis server of our own that refuses every write (maxmemory reached: an error reply,
    not a lost connection), on a port of the 55400-55499 range."""
    import socket
    import subprocess

    for port in range(55450, 55500):
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) != 0:
                break
    server = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--maxmemory",
            "1",
            "--maxmemory-policy",
            "noeviction",
        ],
        stdout=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port)
    deadline = time.monotonic() + 30
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)
    yield f"redis://127.0.0.1:{port}/0"
    client.close()
    server.terminate()
    server.wait(timeout=30)


def test_a_redis_that_refuses_writes_leaves_events_in_the_outbox_and_the_exit_clean(
    trained_world: World, full_redis: str, tmp_path
) -> None:
    """OOM, READONLY or MISCONF replies are the bus being unable to take events: the engine
    trades on, exits cleanly, clears its heartbeat, and every event waits in the outbox."""
    from live.runner import run_session

    settings = make_settings(trained_world.root, REDIS_URL=full_redis, DATABASE_URL=f"sqlite:///{tmp_path / 'ops.db'}")
    start = int(trained_world.candles.filter(pl.col("symbol") == SYMBOLS[0])["ts"][-50])
    engine = asyncio.run(run_session(settings, SessionConfig(name="full", start=start), max_bars=5))
    session = engine.store.session("full")
    assert engine.bars == 5 and session.heartbeat_at is None  # a clean exit: readers see it is gone
    rows = outbox_rows(engine.store, session.id)
    assert len(rows) >= 5 and all(r.relayed_at is None for r in rows)  # nothing lost, nothing stamped
