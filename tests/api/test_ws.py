"""The WebSocket (``GET /ws``) through the real stack: uvicorn, the websockets client library,
PostgreSQL and Redis; events written as the engine writes them (outbox rows in a transaction)
and published by the engine's own relay (``live.outbox.OutboxRelay``)."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis
from sqlalchemy import update
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

import api.ws
from api.event_sources import RedisStreams
from api.fanout import Event
from api.ws import WsOptions
from live.bus import InProcessBus, RedisBus
from live.outbox import OutboxRelay, outbox_mark
from tests.api.conftest import Api, start_api
from tests.conftest import REDIS_URL
from tradeloop.bus import entry_order
from tradeloop.identity import Role, Scope
from tradeloop.ops import OpsStore, TradingSession

FAST = WsOptions(poll_s=0.05, gap_wait_s=0.5)


@pytest.fixture
def redis_api(tmp_path: Path, pg_database: str, redis_prefix: str, monkeypatch) -> Iterator[Api]:
    """The API over PostgreSQL with Redis (the engine's streams under ``redis_prefix``)."""
    monkeypatch.setattr(api.ws, "DEFAULT_OPTIONS", FAST)
    yield from start_api(tmp_path, pg_database, REDIS_URL=REDIS_URL, TRADELOOP_REDIS_PREFIX=redis_prefix)


@pytest.fixture
def embedded_api(tmp_path: Path, monkeypatch) -> Iterator[Api]:
    """The embedded default: SQLite, no Redis."""
    monkeypatch.setattr(api.ws, "DEFAULT_OPTIONS", FAST)
    monkeypatch.delenv("REDIS_URL", raising=False)
    yield from start_api(tmp_path, f"sqlite:///{tmp_path / 'ops.db'}", REDIS_URL=None)


class Engine:
    """Writes events as the live engine does: outbox rows in a transaction, then the relay."""

    def __init__(self, store: OpsStore, bus: RedisBus | InProcessBus):
        self.store, self.bus = store, bus

    def session(self, name: str, owner: int | None) -> TradingSession:
        session = self.store.create_session(
            name=name,
            strategy="sma_cross",
            exchange="coinbase",
            timeframe="4h",
            symbols=["BTC-USD", "ETH-USD"],
            mode="paper",
            init_cash=1000.0,
            config={},
        )
        with self.store.transaction() as db:
            db.execute(update(TradingSession).where(TradingSession.id == session.id).values(owner_id=owner))
        return session

    async def write(self, session: TradingSession, events: list[tuple[str, dict]]) -> None:
        with self.store.transaction() as db:
            for stream, payload in events:
                OpsStore.add_event(db, stream, payload, session_id=session.id)
        relay = OutboxRelay(self.store, self.bus, session_id=session.id, mark=outbox_mark(session))
        assert await relay.relay() == len(events)


def ws_url(api_: Api, query: str = "") -> str:
    return api_.url.replace("http://", "ws://") + "/ws" + (f"?{query}" if query else "")


def token(api_: Api, username: str) -> str:
    return api_.login(username)["Authorization"].removeprefix("Bearer ")


async def receive(ws: ClientConnection, *, timeout: float = 15.0) -> dict:
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def until(ws: ClientConnection, kind: str, *, timeout: float = 15.0) -> tuple[list[dict], dict]:
    """The events received before the next message of type ``kind``, and that message."""
    events = []
    while True:
        message = await receive(ws, timeout=timeout)
        if message["type"] == kind:
            return events, message
        assert message["type"] == "event", message
        events.append(message)


async def subscribe(ws: ClientConnection, **body) -> dict:
    await ws.send(json.dumps({"op": "subscribe", **body}))
    _, ack = await until(ws, "subscribed")
    return ack


async def take(ws: ClientConnection, n: int, *, timeout: float = 15.0) -> list[dict]:
    out = []
    while len(out) < n:
        message = await receive(ws, timeout=timeout)
        if message["type"] == "event":
            out.append(message)
    return out


async def refused(uri: str, **kwargs) -> tuple[int, str]:
    async with connect(uri, **kwargs) as ws:
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 10)  # nothing arrives before the close
    assert closed.value.rcvd is not None
    return closed.value.rcvd.code, closed.value.rcvd.reason


def test_a_connection_without_or_with_a_bad_credential_is_closed_with_4401(redis_api: Api) -> None:
    ana = redis_api.user("ana")
    good = token(redis_api, "ana")
    key, _ = redis_api.ctx.identity.create_api_key(user_id=ana, name="svc", scopes=[Scope.READ], now=datetime.now(UTC))
    tampered = good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB")

    async def scenario() -> None:
        code, reason = await refused(ws_url(redis_api))
        assert code == 4401 and "not signed in" in reason
        assert (await refused(ws_url(redis_api, "token=not-a-jwt")))[0] == 4401
        assert (await refused(ws_url(redis_api, f"token={tampered}")))[0] == 4401
        assert (await refused(ws_url(redis_api), subprotocols=["bearer", tampered]))[0] == 4401
        assert (await refused(ws_url(redis_api), additional_headers={"X-API-Key": "tl_0123456789ab_nope"}))[0] == 4401
        # a good token, each way a client can send it
        for uri, kwargs in (
            (ws_url(redis_api, f"token={good}"), {}),
            (ws_url(redis_api), {"subprotocols": ["bearer", good]}),
            (ws_url(redis_api), {"additional_headers": {"Authorization": f"Bearer {good}"}}),
        ):
            async with connect(uri, **kwargs) as ws:
                ack = await subscribe(ws, channels=["prices"])
                assert ack["channels"] == ["prices"] and ack["cursor"]
        async with connect(ws_url(redis_api), subprotocols=["bearer", good]) as ws:
            assert ws.subprotocol == "bearer"
        async with connect(ws_url(redis_api), additional_headers={"X-API-Key": key}) as ws:
            await subscribe(ws, channels=["orders"])
        assert (await refused(ws_url(redis_api, f"token={good}"), additional_headers={"X-API-Key": key}))[0] == 4401

    asyncio.run(scenario())


def test_an_account_disabled_while_connected_is_closed_with_4401(redis_api: Api, monkeypatch) -> None:
    monkeypatch.setattr(api.ws, "DEFAULT_OPTIONS", WsOptions(recheck_s=0.2))
    redis_api.user("ana")
    auth = {"subprotocols": ["bearer", token(redis_api, "ana")]}

    async def scenario() -> None:
        async with connect(ws_url(redis_api), **auth) as ws:
            await subscribe(ws, channels=["prices"])
            await asyncio.to_thread(redis_api.ctx.identity.set_disabled, "ana", True, now=datetime.now(UTC))
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401
        assert "disabled" in closed.value.rcvd.reason

    asyncio.run(scenario())


def test_a_user_receives_the_orders_of_their_own_sessions_only_and_an_admin_every_one(
    redis_api: Api, redis_prefix: str
) -> None:
    ana, bob = redis_api.user("ana", Role.TRADER), redis_api.user("bob", Role.TRADER)
    redis_api.user("root", Role.ADMIN)
    engine = Engine(redis_api.ctx.store, RedisBus(REDIS_URL, prefix=redis_prefix))
    mine, theirs = engine.session("ana-s", ana), engine.session("bob-s", bob)
    tokens = {name: token(redis_api, name) for name in ("ana", "bob", "root")}

    async def scenario() -> None:
        sockets = {n: await connect(ws_url(redis_api), subprotocols=["bearer", t]) for n, t in tokens.items()}
        for ws in sockets.values():
            await subscribe(ws, channels=["orders", "prices"])
        await sockets["ana"].send(json.dumps({"op": "subscribe", "channels": ["orders"], "sessions": [theirs.id]}))
        error = await receive(sockets["ana"])
        assert error["type"] == "error" and f"session {theirs.id} does not exist" in error["detail"]
        ack = await subscribe(sockets["ana"], channels=["orders", "prices"])  # the refused one changed nothing
        assert ack["sessions"] is None
        for n in range(3):  # interleaved: the fan-out must pick, not rely on order
            await engine.write(mine, [("orders", {"client_order_id": f"A{n}", "symbol": "BTC-USD", "side": "buy"})])
            await engine.write(theirs, [("orders", {"client_order_id": f"B{n}", "symbol": "ETH-USD", "side": "sell"})])
        await engine.write(theirs, [("candles", {"ts": 1, "symbols": ["ETH-USD"], "close": [2001.5]})])
        await engine.write(mine, [("orders", {"client_order_id": "A-last", "symbol": "BTC-USD", "side": "sell"})])
        counts = {"ana": 4 + 1, "bob": 3 + 1, "root": 7 + 1}  # orders, and the one price event
        got = {n: await take(ws, counts[n]) for n, ws in sockets.items()}
        orders = {n: [e["data"]["client_order_id"] for e in got[n] if e["channel"] == "orders"] for n in got}
        assert orders["ana"] == ["A0", "A1", "A2", "A-last"]  # A-last came after every B event
        assert orders["bob"] == ["B0", "B1", "B2"]
        assert orders["root"] == ["A0", "B0", "A1", "B1", "A2", "B2", "A-last"]
        assert {e["session_id"] for e in got["ana"] if e["channel"] == "orders"} == {mine.id}
        for n in ("ana", "bob"):  # prices are public, and name no session
            prices = [e for e in got[n] if e["channel"] == "prices"]
            assert [p["data"] for p in prices] == [{"ts": 1, "prices": {"ETH-USD": 2001.5}}]
            assert "session_id" not in prices[0] and prices[0]["stream"] == "candles"
        # bob receives nothing more (ana's A-last was offered after his last event)
        with pytest.raises(TimeoutError):
            await receive(sockets["bob"], timeout=0.5)
        for ws in sockets.values():
            await ws.close()

    asyncio.run(scenario())


def test_a_client_that_resumes_from_its_last_cursor_gets_each_missed_event_once(
    redis_api: Api, redis_prefix: str
) -> None:
    ana = redis_api.user("ana", Role.TRADER)
    engine = Engine(redis_api.ctx.store, RedisBus(REDIS_URL, prefix=redis_prefix))
    session = engine.session("ana-s", ana)
    auth = {"subprotocols": ["bearer", token(redis_api, "ana")]}

    def order(n: int) -> tuple[str, dict]:
        return "orders", {"client_order_id": f"O{n}", "symbol": "BTC-USD", "side": "buy"}

    def fill(n: int) -> tuple[str, dict]:
        return "fills", {"client_order_id": f"O{n}", "symbol": "BTC-USD", "qty": 1.0, "price": 100.0 + n}

    async def scenario() -> None:
        watcher = await connect(ws_url(redis_api), **auth)  # stays: shows when the API has read an event
        await subscribe(watcher, channels=["orders", "fills"])
        async with connect(ws_url(redis_api), **auth) as ws:
            await subscribe(ws, channels=["orders", "fills"])
            await engine.write(session, [order(0), fill(0), order(1)])
            first = await take(ws, 3)
        per_stream = {
            c: [e["data"]["client_order_id"] for e in first if e["channel"] == c] for c in ("orders", "fills")
        }
        assert per_stream == {"orders": ["O0", "O1"], "fills": ["O0"]}  # in order within a stream
        cursor = first[-1]["cursor"]  # where the client stands on every stream
        await engine.write(session, [fill(1), order(2), fill(2), order(3)])  # missed while away
        assert len(await take(watcher, 3 + 4)) == 7  # read by the API: what the client missed is history
        async with connect(ws_url(redis_api), **auth) as ws:
            await ws.send(json.dumps({"op": "resume", "last_id": cursor, "channels": ["orders", "fills"]}))
            ack = await receive(ws)
            assert ack["type"] == "subscribed" and ack["cursor"] == cursor
            replayed, done = await until(ws, "replayed")
            assert done["count"] == 4
            await engine.write(session, [fill(3), order(4)])  # live again
            live = await take(ws, 2)
            with pytest.raises(TimeoutError):
                await receive(ws, timeout=0.5)
        seen = [(e["stream"], e["data"]["client_order_id"]) for e in replayed + live]
        # replayed by stream (each in order), then live: every event once
        assert sorted(seen) == sorted(
            [("fills", "O1"), ("orders", "O2"), ("fills", "O2"), ("orders", "O3"), ("fills", "O3"), ("orders", "O4")]
        )
        assert [s for s in seen[:4] if s[0] == "orders"] == [("orders", "O2"), ("orders", "O3")]
        assert seen[4:] == [("fills", "O3"), ("orders", "O4")]
        ids = [(e["stream"], e["id"]) for e in first + replayed + live]  # ids repeat across streams
        assert len(set(ids)) == len(ids)
        # ?last_id= at connect does the same for the first subscription
        async with connect(ws_url(redis_api, f"last_id={live[-1]['cursor']}"), **auth) as ws:
            await subscribe(ws, channels=["orders", "fills"])
            again, done = await until(ws, "replayed")
            assert again == [] and done["count"] == 0
        await watcher.close()

    asyncio.run(scenario())


def test_a_client_that_never_reads_is_dropped_while_a_fast_one_receives_everything(
    redis_api: Api, redis_prefix: str, monkeypatch
) -> None:
    monkeypatch.setattr(api.ws, "DEFAULT_OPTIONS", WsOptions(queue_size=250))
    redis_api.user("root", Role.ADMIN)
    engine = Engine(redis_api.ctx.store, RedisBus(REDIS_URL, prefix=redis_prefix))
    session = engine.session("busy", None)
    auth = {"subprotocols": ["bearer", token(redis_api, "root")]}
    total, pad = 1500, "x" * 8000  # 12 MB: far more than the socket buffers between them hold
    # a small receive buffer, fixed (Linux would grow it to 32 MB on loopback)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65_536)
    sock.connect(("127.0.0.1", int(redis_api.url.rsplit(":", 1)[1])))

    async def scenario() -> None:
        # no compression: the padding would shrink to nothing
        slow = await connect(ws_url(redis_api), sock=sock, max_queue=1, compression=None, **auth)
        await subscribe(slow, channels=["signals"])
        async with connect(ws_url(redis_api), **auth) as fast:
            await subscribe(fast, channels=["signals"])
            events = [("signals", {"ts": n, "signals": [["BTC-USD", 1]], "pad": pad}) for n in range(total)]
            writer = asyncio.create_task(engine.write(session, events))
            got = await take(fast, total, timeout=60)
            await writer
        assert [e["data"]["ts"] for e in got] == list(range(total))
        slow_got = 0
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                message = json.loads(await asyncio.wait_for(slow.recv(), 15))
                slow_got += message["type"] == "event"
        assert slow_got < total
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1013, closed.value
        assert "too slow" in closed.value.rcvd.reason

    asyncio.run(scenario())


def test_session_status_and_risk_events_reach_the_owner(redis_api: Api, redis_prefix: str) -> None:
    ana = redis_api.user("ana", Role.TRADER)
    engine = Engine(redis_api.ctx.store, RedisBus(REDIS_URL, prefix=redis_prefix))
    session = engine.session("ana-s", ana)
    other = engine.session("other", None)  # an admin's

    async def scenario() -> None:
        async with connect(ws_url(redis_api), subprotocols=["bearer", token(redis_api, "ana")]) as ws:
            await subscribe(ws, channels=["sessions", "risk"])
            await asyncio.to_thread(redis_api.ctx.store.set_status, "other", "paused")
            await asyncio.to_thread(redis_api.ctx.store.set_status, "ana-s", "paused")
            await engine.write(other, [("risk", {"event": "risk_denied", "symbol": "ETH-USD"})])
            await engine.write(session, [("risk", {"event": "kill_switch_tripped", "reason": "drawdown"})])
            got = await take(ws, 2)
        by_channel = {e["channel"]: e for e in got}
        assert by_channel["sessions"]["data"]["event"] == "session_paused"
        assert by_channel["sessions"]["session_id"] == session.id and by_channel["sessions"]["stream"] == "audit"
        assert by_channel["risk"]["data"] == {"event": "kill_switch_tripped", "reason": "drawdown"}
        assert by_channel["risk"]["session_id"] == session.id

    asyncio.run(scenario())


def test_without_redis_the_events_come_from_the_outbox_and_resume_alike(embedded_api: Api) -> None:
    ana = embedded_api.user("ana", Role.TRADER)
    bob = embedded_api.user("bob", Role.TRADER)
    engine = Engine(embedded_api.ctx.store, InProcessBus())  # the engine's own bus: out of the API's reach
    mine, theirs = engine.session("ana-s", ana), engine.session("bob-s", bob)
    auth = {"subprotocols": ["bearer", token(embedded_api, "ana")]}

    def order(name: str) -> tuple[str, dict]:
        return "orders", {"client_order_id": name, "symbol": "BTC-USD", "side": "buy"}

    async def scenario() -> None:
        watcher = await connect(ws_url(embedded_api), **auth)  # shows when the API has read an event
        await subscribe(watcher, channels=["orders"])
        async with connect(ws_url(embedded_api), **auth) as ws:
            await subscribe(ws, channels=["orders"])
            await engine.write(theirs, [order("B0")])
            await engine.write(mine, [order("A0"), order("A1")])
            first = await take(ws, 2)
        assert [e["data"]["client_order_id"] for e in first] == ["A0", "A1"]
        assert first[-1]["cursor"].startswith("outbox:")
        await engine.write(mine, [order("A2")])
        await engine.write(theirs, [order("B1")])
        await engine.write(mine, [order("A3")])
        assert [e["data"]["client_order_id"] for e in await take(watcher, 4)][-1] == "A3"
        async with connect(ws_url(embedded_api, f"last_id={first[-1]['cursor']}"), **auth) as ws:
            await subscribe(ws, channels=["orders"])
            replayed, done = await until(ws, "replayed")
            assert done["count"] == 2
            await engine.write(mine, [order("A4")])
            live = await take(ws, 1)
            with pytest.raises(TimeoutError):
                await receive(ws, timeout=0.5)
        assert [e["data"]["client_order_id"] for e in replayed + live] == ["A2", "A3", "A4"]
        await watcher.close()

    asyncio.run(scenario())


class Enough(Exception):
    pass


def test_the_reader_reads_again_what_it_did_not_offer_and_removes_the_groups_of_dead_readers(
    redis_prefix: str,
) -> None:
    """At least once, through a consumer group of the API process; a crashed process's group
    (its heartbeat expired) does not outlive it."""
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    orders = f"{redis_prefix}:orders"
    client.xgroup_create(orders, "ws:gone:1", id="$", mkstream=True)  # a dead reader: no heartbeat
    client.set(f"{redis_prefix}:ws-reader:ws:alive:2", "1", ex=60)
    client.xgroup_create(orders, "ws:alive:2", id="$")  # another API process, alive
    client.xgroup_create(orders, "dashboard", id="$")  # not an API reader: not ours to remove

    async def scenario() -> None:
        reader = RedisStreams(REDIS_URL, prefix=redis_prefix, group="ws:test:1", block_ms=100)
        start = await reader.start()
        assert {g["name"] for g in client.xinfo_groups(orders)} == {"ws:alive:2", "dashboard", "ws:test:1"}
        bus = RedisBus(REDIS_URL, prefix=redis_prefix)
        ids = [await bus.publish_once("orders", {"n": n}, mark="m", seq=n + 1, session_id=7) for n in range(3)]
        assert all(entry_order(i) > entry_order(start["orders"]) for i in ids)

        async def fail(events: list[Event]) -> None:
            raise Enough("the hub fell over before the batch was offered")

        with pytest.raises(Enough):
            await reader.run(fail)
        assert client.xpending(orders, "ws:test:1")["pending"] == 3  # read, not acked
        offered: list[Event] = []

        async def keep(events: list[Event]) -> None:
            offered.extend(events)

        with pytest.raises(TimeoutError):
            await asyncio.wait_for(reader.run(keep), 1.0)  # the reader restarts: reclaimed, then live
        assert [(e.id, e.session_id, e.data, e.channel) for e in offered] == [
            (i, 7, {"n": n}, "orders") for n, i in enumerate(ids)
        ]
        assert client.xpending(orders, "ws:test:1")["pending"] == 0
        await reader.close()
        await bus.close()
        assert "ws:test:1" not in {g["name"] for g in client.xinfo_groups(orders)}
        assert not client.exists(f"{redis_prefix}:ws-reader:ws:test:1")

    asyncio.run(scenario())
    client.close()
