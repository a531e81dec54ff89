"""Service API figures: the API as ``tradeloop up`` serves it with ``REDIS_URL`` set (uvicorn,
two processes: ``--workers``) over the PostgreSQL and Redis of this machine, with seeded
users and sessions, and

* **REST**: ``--users`` concurrent users (httpx.AsyncClient, each with their own token from
  ``POST /auth/login``) for ``--seconds``, each a request then a think time (uniform 0 to
  2 x ``--think``): about 90% reads of their own session (the session list, the session,
  its positions, its last 100 equity marks), 10% writes (pause or resume the session, make an
  API key). Requests per second and p50/p95/p99 latency for reads and writes apart, then the
  same mix without think time for ``--saturate`` seconds (the most the process answers).
* **WebSocket**: ``--signals-per-minute`` signal events for ``--ws-seconds``, written as the
  live engine writes them (outbox rows committed with their bar, then ``live.outbox.
  OutboxRelay`` publishes them to the Redis streams), fanned out by the API to
  ``--subscribers`` WebSocket connections subscribed to ``signals``. All connections belong to
  one desk account whose sessions emit every signal (every connection receives every event:
  the widest fan-out), each connection its own sign-in. Latency runs from the moment the
  engine builds the event (before its transaction) to its receipt by the client; delivered
  against expected (signals x subscribers).

Targets (issue 13): p99 under 100 ms for reads, under 1 s end to end.

The rate limits are raised for the run (the limiter still counts every request in Redis);
access logs are off (uvicorn --log-level warning). A throwaway database and Redis prefix
are made and removed. ``TRADELOOP_TEST_DATABASE_URL`` / ``TRADELOOP_TEST_REDIS_URL`` point it
at other servers, as for the tests.

Run:  .venv/bin/python bench/api.py
      .venv/bin/python bench/api.py --users 50 --seconds 20 --ws-seconds 30
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PG_ADMIN_URL = os.environ.get("TRADELOOP_TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("TRADELOOP_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
PASSWORD = "bench passphrase, long enough"
SYMBOLS = ["BTC-USD", "ETH-USD", "SOL-USD", "ADA-USD", "XRP-USD"]
BAR_MS = 60_000
T0 = 1_893_456_000_000  # 2030-01-01: the seeded bars
HIGH = "1000000/minute"  # the rate limits, out of the way of the load


@dataclass
class Seeded:
    users: list[tuple[str, int]]  # (username, their session's id)
    desk_sessions: list  # TradingSession rows owned by the desk account


@contextmanager
def throwaway_database() -> Iterator[str]:
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"tradeloop_bench_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield sa.make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def seed(url: str, *, users: int, orders: int, equity: int, desk_sessions: int) -> Seeded:
    """``users`` traders, each owning a session with ``orders`` filled orders (a fill each), a
    position per symbol and ``equity`` equity marks; a desk account with ``desk_sessions``."""
    from tradeloop.identity import IdentityStore, Role
    from tradeloop.ops import EquityPoint, Fill, OpsStore, Order, Position

    store = OpsStore.open(url)
    identity = IdentityStore(store)

    def session(name: str, owner_id: int):
        return store.create_session(
            name=name, strategy="sma_cross", exchange="coinbase", timeframe="1m", symbols=SYMBOLS, mode="paper",
            init_cash=10_000.0, config={}, owner_id=owner_id, actor="bench",
        )  # fmt: skip

    made = []
    for i in range(users):
        user = identity.create_user(username=f"u{i:03d}", password=PASSWORD, role=Role.TRADER)
        sid = session(f"s{i:03d}", user.id).id
        order_rows = [
            dict(
                session_id=sid, client_order_id=f"{sid}-{k}", venue="paper", symbol=SYMBOLS[k % 5], side="buy",
                intent="enter_long", quote_amount=100.0, decided_ts=T0 + k * BAR_MS, status="filled",
                filled_qty=1.0, avg_price=100.0,
            )
            for k in range(orders)
        ]  # fmt: skip
        with store.transaction() as db:
            ids = db.scalars(sa.insert(Order).returning(Order.id), order_rows).all()
            db.execute(
                sa.insert(Fill),
                [
                    dict(
                        order_id=oid, session_id=sid, venue="paper", symbol=SYMBOLS[k % 5], trade_id=f"t{oid}",
                        side="buy", quantity=1.0, price=100.0, fee=0.1, ts=T0 + (k + 1) * BAR_MS,
                    )
                    for k, oid in enumerate(ids)
                ],
            )  # fmt: skip
            db.execute(
                sa.insert(EquityPoint),
                [
                    dict(session_id=sid, ts=T0 + k * BAR_MS, equity=10_000.0 + k % 97, cash=5_000.0)
                    for k in range(equity)
                ],
            )
            db.execute(
                sa.insert(Position),
                [
                    dict(
                        session_id=sid, venue="coinbase", symbol=s, quantity=1.0, entry_price=100.0, entry_fee=0.1,
                        entry_ts=T0, last_price=101.0, realized_pnl=0.0,
                    )
                    for s in SYMBOLS
                ],
            )  # fmt: skip
        made.append((f"u{i:03d}", sid))
    desk = identity.create_user(username="desk", password=PASSWORD, role=Role.TRADER)
    rows = [session(f"desk-{j}", desk.id) for j in range(desk_sessions)]
    store.close()
    return Seeded(users=made, desk_sessions=rows)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def api_server(env: dict[str, str], *, workers: int = 1) -> Iterator[str]:
    """uvicorn in a subprocess, as ``tradeloop up`` runs it; its base URL once ready."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", "api.app:create_app", "--host", "127.0.0.1", "--port",
         str(port), "--log-level", "warning", "--workers", str(workers)],
        cwd=ROOT, env=env,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the API did not start (rc={proc.poll()})")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


async def tokens_for(url: str, usernames: list[str]) -> list[str]:
    """Each sign-in's access token (8 at a time: argon2 is the cost)."""
    gate = asyncio.Semaphore(8)
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:

        async def login(name: str) -> str:
            async with gate:
                answer = await client.post("/auth/login", json={"username": name, "password": PASSWORD})
                answer.raise_for_status()
                return answer.json()["access_token"]

        return list(await asyncio.gather(*(login(n) for n in usernames)))


# ---------------------------------------------------------------------------------- REST


@dataclass
class Samples:
    ms: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))  # per endpoint
    errors: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    seconds: float = 0.0


READS = ("GET /sessions", "GET /sessions/{id}", "GET /sessions/{id}/positions", "GET /sessions/{id}/equity")
WRITES = ("POST /sessions/{id}/pause|resume", "POST /keys")


async def rest_load(
    url: str, users: list[tuple[str, int]], tokens: list[str], *, seconds: float, think: float
) -> Samples:
    samples = Samples()
    limits = httpx.Limits(max_connections=len(users), max_keepalive_connections=len(users))
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client:

        async def user(index: int, sid: int, token: str, end: float) -> None:
            rng = random.Random(index)
            headers = {"Authorization": f"Bearer {token}"}
            paused = False
            await asyncio.sleep(rng.uniform(0, 2 * think))  # users do not all start at once
            while time.monotonic() < end:
                if rng.random() < 0.9:
                    kind = rng.choice(READS)
                    path = {"GET /sessions": "/sessions", "GET /sessions/{id}": f"/sessions/{sid}",
                            "GET /sessions/{id}/positions": f"/sessions/{sid}/positions",
                            "GET /sessions/{id}/equity": f"/sessions/{sid}/equity"}[kind]  # fmt: skip
                    request = client.get(path, headers=headers)
                elif rng.random() < 0.8:
                    kind = WRITES[0]
                    request = client.post(f"/sessions/{sid}/{'resume' if paused else 'pause'}", headers=headers)
                    paused = not paused
                else:
                    kind = WRITES[1]
                    request = client.post(
                        "/keys", json={"name": f"k{rng.randrange(10**9)}", "scopes": ["read"]}, headers=headers
                    )
                started = time.perf_counter()
                answer = await request
                samples.ms[kind].append((time.perf_counter() - started) * 1000)
                if answer.status_code >= 300:
                    samples.errors[kind] += 1
                if think:
                    await asyncio.sleep(rng.uniform(0, 2 * think))

        started = time.monotonic()
        end = started + seconds
        await asyncio.gather(
            *(user(i, sid, tok, end) for i, ((_, sid), tok) in enumerate(zip(users, tokens, strict=True)))
        )
        samples.seconds = time.monotonic() - started
    return samples


def _row(label: str, values: list[float], errors: int, seconds: float) -> str:
    if not values:
        return f"{label:<34} {0:>8}"
    p50, p95, p99 = np.percentile(values, [50, 95, 99])
    return (
        f"{label:<34} {len(values):>8} {len(values) / seconds:>8.1f} {p50:>8.1f} {p95:>8.1f} {p99:>8.1f} "
        f"{max(values):>8.1f} {errors:>6}"
    )


def rest_table(title: str, samples: Samples) -> str:
    head = (
        f"{'requests':<34} {'count':>8} {'req/s':>8} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'max ms':>8} "
        f"{'errors':>6}"
    )
    lines = [title, head, "-" * len(head)]
    for group, kinds in (("reads", READS), ("writes", WRITES)):
        values = [v for k in kinds for v in samples.ms[k]]
        lines.append(_row(group, values, sum(samples.errors[k] for k in kinds), samples.seconds))
        lines += [_row(f"  {k}", samples.ms[k], samples.errors[k], samples.seconds) for k in kinds]
    everything = [v for values in samples.ms.values() for v in values]
    lines.append(_row("all", everything, sum(samples.errors.values()), samples.seconds))
    return "\n".join(lines)


# ----------------------------------------------------------------------------- WebSocket


def publish(db_url: str, sessions: list, *, per_minute: int, seconds: float, prefix: str, done: threading.Event) -> int:
    """Write signal events as the engine does, one "bar" a second spread over the desk's
    sessions: outbox rows in a transaction, then each session's OutboxRelay to Redis."""
    from live.bus import RedisBus
    from live.outbox import OutboxRelay, outbox_mark
    from tradeloop.ops import OpsStore

    async def run() -> int:
        store = OpsStore.open(db_url)
        bus = RedisBus(REDIS_URL, prefix=prefix)
        relays = {s.id: OutboxRelay(store, bus, session_id=s.id, mark=outbox_mark(s)) for s in sessions}
        sent, tick, started = 0, 0, time.monotonic()
        try:
            while tick < seconds:
                due = round((tick + 1) * per_minute / 60) - round(tick * per_minute / 60)
                touched = set()
                with store.transaction() as db:
                    for k in range(due):
                        session = sessions[(sent + k) % len(sessions)]
                        signal = {"ts": T0 + tick * 1000, "signals": [[SYMBOLS[k % 5], 1 if k % 2 else -1]],
                                  "emitted_at": time.time()}  # fmt: skip
                        OpsStore.add_event(db, "signals", signal, session_id=session.id)
                        touched.add(session.id)
                for sid in touched:
                    await relays[sid].relay(force=True)
                sent += due
                tick += 1
                await asyncio.sleep(max(0.0, started + tick - time.monotonic()))
        finally:
            await bus.close()
            store.close()
        return sent

    try:
        return asyncio.run(run())
    finally:
        done.set()


async def ws_fanout(url: str, db_url: str, sessions: list, tokens: list[str], *, per_minute: int, seconds: float,
                    prefix: str) -> dict:  # fmt: skip
    from websockets.asyncio.client import connect

    ws_url = url.replace("http://", "ws://") + "/ws"
    latencies: list[float] = []
    received = [0] * len(tokens)
    sockets = []
    for token in tokens:
        ws = await connect(ws_url, additional_headers={"Authorization": f"Bearer {token}"}, max_queue=None)
        await ws.send(json.dumps({"op": "subscribe", "channels": ["signals"]}))
        while json.loads(await ws.recv())["type"] != "subscribed":
            pass
        sockets.append(ws)

    async def listen(index: int, ws) -> None:
        async for raw in ws:
            message = json.loads(raw)
            if message["type"] == "event":
                latencies.append((time.time() - message["data"]["emitted_at"]) * 1000)
                received[index] += 1

    listeners = [asyncio.create_task(listen(i, ws)) for i, ws in enumerate(sockets)]
    done = threading.Event()
    box: list[int] = []
    publisher = threading.Thread(
        target=lambda: box.append(
            publish(db_url, sessions, per_minute=per_minute, seconds=seconds, prefix=prefix, done=done)
        ),
        name="engine",
    )
    publisher.start()
    while not done.is_set():
        await asyncio.sleep(0.2)
    publisher.join()
    sent = box[0] if box else 0
    expected = sent * len(sockets)
    deadline = time.monotonic() + 10  # the last events in flight
    while sum(received) < expected and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    for ws in sockets:
        await ws.close()
    for task in listeners:
        task.cancel()
    await asyncio.gather(*listeners, return_exceptions=True)
    return {"sent": sent, "subscribers": len(sockets), "delivered": sum(received), "expected": expected,
            "ms": latencies, "slowest_client": min(received) if received else 0}  # fmt: skip


def ws_table(result: dict, *, per_minute: int, seconds: float) -> str:
    values = result["ms"] or [float("nan")]
    p50, p95, p99 = np.percentile(values, [50, 95, 99])
    head = (
        f"{'signals':>8} {'per min':>8} {'subscribers':>11} {'delivered':>10} {'expected':>10} "
        f"{'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'max ms':>8}"
    )
    row = (
        f"{result['sent']:>8} {per_minute:>8} {result['subscribers']:>11} {result['delivered']:>10} "
        f"{result['expected']:>10} {p50:>8.1f} {p95:>8.1f} {p99:>8.1f} {max(values):>8.1f}"
    )
    title = f"WebSocket fan-out: engine event (outbox, relay, Redis stream) -> API -> client, {seconds:g} s"
    return "\n".join([title, head, "-" * len(head), row])


# ---------------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=40.0, help="REST load with think time")
    parser.add_argument("--think", type=float, default=2.0, help="mean think time between a user's requests (s)")
    parser.add_argument("--saturate", type=float, default=15.0, help="REST load without think time (s); 0: skip")
    parser.add_argument("--workers", type=int, default=2, help="API processes (tradeloop up with Redis: 2)")
    parser.add_argument("--subscribers", type=int, default=100)
    parser.add_argument("--signals-per-minute", type=int, default=1000)
    parser.add_argument("--ws-seconds", type=float, default=60.0, help="0: skip the WebSocket run")
    args = parser.parse_args()

    import redis

    prefix = f"tradeloop-bench-{uuid.uuid4().hex[:8]}"
    with throwaway_database() as db_url, tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        seeded = seed(db_url, users=args.users, orders=200, equity=1000, desk_sessions=10)
        print(f"seeded {args.users} users with a session each (200 orders and fills, 5 positions, 1000 equity "
              f"marks) and a desk of 10 sessions in {time.perf_counter() - t:.1f} s")  # fmt: skip
        env = {
            **os.environ, "TRADELOOP_DATA_DIR": tmp, "DATABASE_URL": db_url, "REDIS_URL": REDIS_URL,
            "TRADELOOP_REDIS_PREFIX": prefix, "TRADELOOP_LOG_LEVEL": "WARNING", "TRADELOOP_RATE_LIMIT_USER": HIGH,
            "TRADELOOP_RATE_LIMIT_API_KEY": HIGH, "TRADELOOP_RATE_LIMIT_IP": HIGH, "TRADELOOP_RATE_LIMIT_LOGIN": HIGH,
        }  # fmt: skip
        try:
            with api_server(env, workers=args.workers) as url:
                tokens = asyncio.run(tokens_for(url, [name for name, _ in seeded.users]))
                alone = asyncio.run(rest_load(url, seeded.users[:1], tokens[:1], seconds=5.0, think=0.0))
                load = asyncio.run(rest_load(url, seeded.users, tokens, seconds=args.seconds, think=args.think))
                flat = None
                if args.saturate:
                    flat = asyncio.run(rest_load(url, seeded.users, tokens, seconds=args.saturate, think=0.0))
                fanout = None
                if args.ws_seconds:
                    desk = asyncio.run(tokens_for(url, ["desk"] * args.subscribers))
                    fanout = asyncio.run(
                        ws_fanout(url, db_url, seeded.desk_sessions, desk, per_minute=args.signals_per_minute,
                                  seconds=args.ws_seconds, prefix=prefix)
                    )  # fmt: skip
        finally:
            client = redis.Redis.from_url(REDIS_URL)
            keys = list(client.scan_iter(f"{prefix}:*"))
            if keys:
                client.delete(*keys)
            client.close()

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())  # fmt: skip
    print(
        f"\n{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores ({cpu}), load average "
        f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}; API: uvicorn, {args.workers} process(es), "
        "PostgreSQL, Redis\n"
    )
    print(rest_table("REST: 1 user, no think time (the service time of each request), 5 s", alone))
    print()
    print(rest_table(f"REST: {args.users} users, think 0-{2 * args.think:g} s, {args.seconds:g} s", load))
    if flat is not None:
        print()
        print(rest_table(f"REST: {args.users} users, no think time (saturated), {args.saturate:g} s", flat))
    reads = np.percentile([v for k in READS for v in load.ms[k]], 99)
    verdict = f"\ntargets: reads p99 {reads:.1f} ms (< 100 ms: {'met' if reads < 100 else 'missed'})"
    if fanout is not None:
        print()
        print(ws_table(fanout, per_minute=args.signals_per_minute, seconds=args.ws_seconds))
        e2e = np.percentile(fanout["ms"] or [float("inf")], 99)
        verdict += (
            f"; end to end p99 {e2e:.1f} ms (< 1000 ms: {'met' if e2e < 1000 else 'missed'}); "
            f"delivered {fanout['delivered']}/{fanout['expected']}"
        )
    print(verdict)


if __name__ == "__main__":
    main()
