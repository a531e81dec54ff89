"""Servers that go away: PostgreSQL cut mid-run (through a TCP proxy on a port of our own, in
front of the real server), and DATABASE_URL / REDIS_URL checked before any bar."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest
import sqlalchemy as sa

from live.brokers.base import OrderRequest, OrderState
from live.brokers.paper import PaperBroker
from live.engine import EngineConfig
from live.runner import SessionConfig, build_engine, replay_feed
from tests.live.conftest import SYMBOLS, World, assert_matches_backtest, make_settings
from tests.live.tcp_proxy import TcpProxy, free_port
from tradeloop.errors import SessionStateError
from tradeloop.ops import OpsStore

ROOT = Path(__file__).resolve().parents[2]
BARS = 700


class RecordingPaperBroker(PaperBroker):
    """The paper broker, noting whether the database was cut when each order went out."""

    def __init__(self, proxy: TcpProxy, **kw):
        super().__init__(**kw)
        self.proxy = proxy
        self.sent: list[tuple[str, bool]] = []

    async def submit(self, order: OrderRequest) -> OrderState:
        self.sent.append((order.client_order_id, self.proxy.is_cut))
        return await super().submit(order)


async def until(condition: Callable[[], bool], *, what: str, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


@pytest.fixture
def pg_proxy() -> TcpProxy:
    proxy = TcpProxy(5432).start()
    yield proxy
    proxy.close()


def test_database_cut_mid_run_sends_nothing_while_down_and_resumes_to_the_backtest(
    trained_world: World, pg_url: str, pg_proxy: TcpProxy
) -> None:
    from live.locks import EngineLocks, session_lock_key

    proxied = sa.make_url(pg_url).set(port=pg_proxy.port).render_as_string(hide_password=False)
    settings = make_settings(trained_world.root, DATABASE_URL=proxied)
    world = World(trained_world.root, settings, trained_world.candles, trained_world.champion)
    start = int(world.candles.filter(pl.col("symbol") == SYMBOLS[0])["ts"][-BARS])
    config = SessionConfig(name="db-cut", start=start)
    store = OpsStore.open(proxied)
    locks = EngineLocks(store)  # held through the cut: the server drops it with the connection
    locks.acquire(session_lock_key("db-cut"), what="session 'db-cut'")
    engine = build_engine(
        settings, config, store=store, locks=locks, engine_config=EngineConfig(db_retry_base_s=0.02, db_retry_cap_s=0.2)
    )
    broker = RecordingPaperBroker(pg_proxy, fee_rate=engine.broker.fee_rate, slippage=engine.broker.slippage)
    engine.broker = broker

    async def scenario() -> tuple[int, int]:
        run = asyncio.create_task(engine.run(replay_feed(settings, config)))
        await until(lambda: engine.bars >= 200 or run.done(), what="200 bars")
        assert not run.done()
        pg_proxy.cut()
        bars_at_cut, sent_at_cut = engine.bars, len(broker.sent)
        await until(lambda: engine.database.failures >= 5, what="five failed pings")
        assert not run.done(), "the engine died with its database"
        assert engine.bars <= bars_at_cut + 1  # no bar completes without its database
        assert len(broker.sent) == sent_at_cut  # and no order goes out
        pg_proxy.restore()
        await asyncio.wait_for(run, timeout=300)
        return bars_at_cut, engine.database.failures

    bars_at_cut, failures = asyncio.run(scenario())
    direct = OpsStore.open(pg_url)
    with pytest.raises(SessionStateError, match=f"pid {os.getpid()}"):  # the lock was taken again after the cut
        EngineLocks(direct).acquire(session_lock_key("db-cut"), what="session 'db-cut'")
    locks.release()
    direct.close()
    assert pg_proxy.cuts == 1 and 200 <= bars_at_cut < BARS
    assert not [cid for cid, cut in broker.sent if cut], "an order went out while the database was cut"
    # the same fills, bar for bar, and the same final equity as the backtest (and an uncut run)
    assert assert_matches_backtest(world, "db-cut", start=start, database_url=pg_url) >= 10
    store = OpsStore.open(pg_url)
    session = store.session("db-cut")
    outages = [e.detail for e in store.audit_log(session.id) if e.event == "database_outage"]
    assert len(outages) == 1 and outages[0]["pings"] >= 5
    assert session.last_bar_ts == int(world.candles["ts"].max())
    store.close()


def live_run(root: Path, **env: str) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    full |= {"TRADELOOP_DATA_DIR": str(root), "TRADELOOP_LOG_LEVEL": "WARNING", **env}
    return subprocess.run(
        [sys.executable, "-m", "tradeloop", "live", "run", "--name", "checked", "--max-bars", "1"],
        cwd=ROOT,
        env=full,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_an_unreachable_database_url_exits_2_naming_it_with_the_password_masked(trained_world: World) -> None:
    port = free_port()  # nothing listens there
    out = live_run(trained_world.root, DATABASE_URL=f"postgresql+psycopg://trader:s3cr3t-pw@127.0.0.1:{port}/ops")
    assert out.returncode == 2, out.stdout + out.stderr
    text = " ".join((out.stdout + out.stderr).split())
    assert f"DATABASE_URL=postgresql+psycopg://trader:***@127.0.0.1:{port}/ops is unreachable" in text
    assert "s3cr3t-pw" not in text


def test_an_unreachable_redis_url_exits_2_before_any_bar(trained_world: World, tmp_path: Path) -> None:
    port = free_port()
    db = tmp_path / "ops.db"
    out = live_run(
        trained_world.root, DATABASE_URL=f"sqlite:///{db}", REDIS_URL=f"redis://:s3cr3t-pw@127.0.0.1:{port}/0"
    )
    assert out.returncode == 2, out.stdout + out.stderr
    text = " ".join((out.stdout + out.stderr).split())
    assert f"REDIS_URL=redis://:***@127.0.0.1:{port}/0 is unreachable" in text
    assert "s3cr3t-pw" not in text
    engine = sa.create_engine(f"sqlite:///{db}")
    with engine.connect() as conn:  # checked before the store was even migrated: no session row
        assert "sessions" not in sa.inspect(conn).get_table_names()
    engine.dispose()
