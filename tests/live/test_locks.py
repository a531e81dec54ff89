"""One engine per session and per exchange account: a second ``tradeloop live run`` (a real
second process) is refused naming the holder; the lock is free again once the first exits."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest
import sqlalchemy as sa

from tests.live.conftest import SYMBOLS, World
from tradeloop.errors import SessionStateError
from tradeloop.ops import OpsStore

ROOT = Path(__file__).resolve().parents[2]


def live_run(world: World, name: str, *extra: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env |= {
        "TRADELOOP_DATA_DIR": str(world.root),
        "TRADELOOP_LOG_LEVEL": "WARNING",
        "DATABASE_URL": world.settings.effective_database_url,
    }
    start = int(world.candles.filter(pl.col("symbol") == SYMBOLS[0])["ts"][-30])
    return subprocess.Popen(
        [sys.executable, "-m", "tradeloop", "live", "run", "--name", name, "--start", str(start), *extra],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def holder_pid(url: str, key: str) -> int | None:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text("SELECT pid FROM engine_locks WHERE key = :k"), {"k": key}).scalar()
    except sa.exc.DBAPIError:  # tables not created yet
        return None
    finally:
        engine.dispose()


def test_a_second_engine_for_a_running_session_is_refused_naming_the_holder(world: World) -> None:
    url = world.settings.effective_database_url
    first = live_run(world, "locked", "--follow")  # replays 30 bars, then waits for new candles
    try:
        deadline = time.monotonic() + 120
        while holder_pid(url, "session:locked") != first.pid:
            assert first.poll() is None, first.stdout.read()
            assert time.monotonic() < deadline, "the first engine never took its lock"
            time.sleep(0.1)
        second = live_run(world, "locked", "--max-bars", "1")
        out, _ = second.communicate(timeout=120)
        text = " ".join(out.split())
        assert second.returncode == 8, out
        assert (
            f"session 'locked' is already traded by another engine: host {socket.gethostname()}, "
            f"pid {first.pid}, since "
        ) in text
        other = live_run(world, "side-by-side", "--max-bars", "1")  # another paper session: its own account
        assert other.wait(timeout=120) == 0, other.stdout.read()
    finally:
        first.send_signal(signal.SIGTERM)  # a clean stop, even while it waits for candles
        out, _ = first.communicate(timeout=60)
    assert first.returncode == 0, out
    assert holder_pid(url, "session:locked") is None  # released, and its holder row with it
    again = live_run(world, "locked", "--max-bars", "1")
    assert again.wait(timeout=120) == 0, again.stdout.read()


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'ops.db'}" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    store = OpsStore.open(url)
    yield store
    store.close()


def test_one_engine_per_exchange_account_and_the_lock_frees_on_release(store: OpsStore) -> None:
    from live.locks import EngineLocks, account_lock_key, session_lock_key

    key = account_lock_key(mode="live", venue="binance", api_key="k-123")
    assert key is not None and "k-123" not in key  # the key's hash, never the key
    assert account_lock_key(mode="paper", venue="binance", api_key="k-123") is None
    first, second = EngineLocks(store), EngineLocks(store)  # two connections / two open files: two engines
    first.acquire(session_lock_key("a"), what="session 'a'")
    first.acquire(key, what="the binance account of TRADELOOP_EXCHANGE_API_KEY")
    second.acquire(session_lock_key("b"), what="session 'b'")
    with pytest.raises(
        SessionStateError,
        match=rf"^the binance account of TRADELOOP_EXCHANGE_API_KEY is "
        rf"already traded by another engine: host .+, pid {os.getpid()}, "
        r"since \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC; stop that engine",
    ):
        second.acquire(key, what="the binance account of TRADELOOP_EXCHANGE_API_KEY")
    first.release()
    assert store.lock_holder(key) is None
    second.acquire(key, what="the binance account of TRADELOOP_EXCHANGE_API_KEY")
    assert store.lock_holder(key).pid == os.getpid()
    second.release()


def _kill(store: OpsStore, conn: sa.Connection) -> None:
    """End ``conn``'s server process from another connection, as a lost network would."""
    backend = conn.execute(sa.text("SELECT pg_backend_pid()")).scalar()
    conn.commit()
    with store.engine.connect() as admin:
        admin.execute(sa.text("SELECT pg_terminate_backend(:p)"), {"p": backend})


def test_after_a_lost_connection_the_engine_takes_its_own_lock_back_and_no_one_elses(pg_url: str) -> None:
    from live.locks import EngineLocks, session_lock_key

    store = OpsStore.open(pg_url)
    locks = EngineLocks(store)
    locks.acquire(session_lock_key("zombie"), what="session 'zombie'")
    stale = locks._conn  # its server process lives on and holds the lock: the server has not noticed yet
    lost = store.engine.connect()
    _kill(store, lost)
    locks._conn = lost  # the engine's lock connection is the one that died
    locks.verify()  # ours: the stale holder is ended and the lock taken again on a new connection
    assert locks._conn is not lost and locks._conn is not stale
    with pytest.raises(sa.exc.OperationalError):
        stale.execute(sa.text("SELECT 1"))
    with pytest.raises(SessionStateError, match="session 'zombie' is already traded by another engine"):
        EngineLocks(store).acquire(session_lock_key("zombie"), what="session 'zombie'")
    # someone else took it while the database was away: refuse to go on
    locks._conn.invalidate()
    locks._conn = None
    thief = EngineLocks(store)
    thief.acquire(session_lock_key("zombie"), what="session 'zombie'")
    thief.pid = 4242
    store.record_lock_holder(session_lock_key("zombie"), host="elsewhere", pid=4242)
    locks._conn = store.engine.connect()
    _kill(store, locks._conn)
    with pytest.raises(
        SessionStateError, match=r"host elsewhere, pid 4242, .*\(taken while this engine's lock connection was lost\)"
    ):
        locks.verify()
    thief.release()
    locks.release()
    store.close()


def test_a_lock_left_to_a_dead_engine_of_this_host_is_taken_over(pg_url: str) -> None:
    """kill -9: the server may hold the dead engine's lock a moment longer; the next engine
    ends that server process (named after the dead pid) instead of refusing to start."""
    from live.locks import EngineLocks, session_lock_key

    store = OpsStore.open(pg_url)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)  # a pid of this host that no longer runs
    key = session_lock_key("orphan")
    number = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big", signed=True)
    orphan = store.engine.connect()  # the dead engine's connection, as the server still sees it
    orphan.execute(
        sa.text("SELECT set_config('application_name', :n, false)"),
        {"n": f"tradeloop-lock {dead_pid} {socket.gethostname()}"[:63]},
    )
    assert orphan.execute(sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": number}).scalar()
    orphan.commit()
    store.record_lock_holder(key, host=socket.gethostname(), pid=dead_pid)
    heir = EngineLocks(store)
    heir.acquire(key, what="session 'orphan'")
    assert store.lock_holder(key).pid == os.getpid()
    with pytest.raises(sa.exc.OperationalError):  # its server process was ended
        orphan.execute(sa.text("SELECT 1"))
    heir.release()
    store.close()


class _LoseTheLockAfter:
    """The replay feed, with ``lose()`` called before its ``n``-th bar: within one run, with no
    error on the engine's bar path."""

    def __init__(self, feed, n: int, lose) -> None:
        self.feed, self.n, self.lose = feed, n, lose

    def history(self, **kwargs):
        return self.feed.history(**kwargs)

    async def batches(self, *, after_ts):
        async for number, batch in _numbered(self.feed.batches(after_ts=after_ts)):
            if number == self.n:
                self.lose()
            yield batch


async def _numbered(batches):
    number = 0
    async for batch in batches:
        yield number, batch
        number += 1


def test_an_engine_whose_lock_was_lost_silently_stops_before_its_next_bar(world: World) -> None:
    """PostgreSQL: a server restart or an admin kill ends the lock connection, and the bar path
    reconnects without an error. SQLite: someone deletes the lock file. Either way a second
    engine can take the lock; the running engine must notice before its next bar and stop."""
    import asyncio

    from live.locks import EngineLocks, session_lock_key
    from live.runner import SessionConfig, build_engine, replay_feed

    url, key = world.settings.effective_database_url, session_lock_key("silent-loss")
    start = int(world.candles.filter(pl.col("symbol") == SYMBOLS[0])["ts"][-60])
    config = SessionConfig(name="silent-loss", start=start)
    store = OpsStore.open(url)
    locks = EngineLocks(store)
    locks.acquire(key, what="session 'silent-loss'")
    thief_store = OpsStore.open(url)
    thief = EngineLocks(thief_store)
    lost_at: list[int | None] = []

    def lose() -> None:
        if store.engine.dialect.name == "postgresql":
            with thief_store.engine.connect() as admin:
                admin.execute(sa.text("SELECT pg_terminate_backend(:p)"), {"p": locks._backend})
        else:
            locks._lock_file(key).unlink()
        thief.acquire(key, what="session 'silent-loss'")  # what the lost lock let through
        thief_store.record_lock_holder(key, host="elsewhere", pid=4242)
        lost_at.append(store.session("silent-loss").last_bar_ts)

    engine = build_engine(world.settings, config, store=store, locks=locks)
    feed = _LoseTheLockAfter(replay_feed(world.settings, config), 10, lose)
    try:
        with pytest.raises(SessionStateError, match=r"host elsewhere, pid 4242"):
            asyncio.run(engine.run(feed))
        assert lost_at and store.session("silent-loss").last_bar_ts == lost_at[0]  # not one bar more
    finally:
        thief.release()
        locks.release()
        thief_store.close()
        store.close()
