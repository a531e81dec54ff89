"""An honest status: running only while the engine's heartbeat is fresh (it beats between bars
too), stale when not, finished when a replay reached the end of its data, stopped after
`stop` (noticed by a waiting engine); `live run` on a series without data exits 3 and
creates nothing. The CLI and the dashboard read the one definition."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
import sqlalchemy as sa

from live.engine import EngineConfig
from live.runner import SessionConfig, run_session
from tests.live.conftest import SYMBOLS, World, make_settings
from tradeloop.ops import OpsStore

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def test_the_status_rules() -> None:
    from tradeloop.ops.status import STALE_AFTER_S, session_status

    fresh, old = NOW - timedelta(seconds=STALE_AFTER_S), NOW - timedelta(seconds=STALE_AFTER_S + 1)
    assert session_status("running", fresh, now=NOW) == "running"
    assert session_status("paused", fresh, now=NOW) == "paused"
    assert session_status("running", old, now=NOW) == "stale"
    assert session_status("paused", old, now=NOW) == "stale"
    assert session_status("running", None, now=NOW) == "stale"  # no engine runs it
    assert session_status("running", old, now=NOW, stale_after_s=STALE_AFTER_S + 1) == "running"
    assert session_status("running", fresh.replace(tzinfo=None), now=NOW) == "running"  # SQLite: naive UTC
    for final in ("finished", "stopped"):
        assert session_status(final, None, now=NOW) == final
        assert session_status(final, fresh, now=NOW) == final


def tradeloop(world: World, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env |= {
        "TRADELOOP_DATA_DIR": str(world.root),
        "TRADELOOP_LOG_LEVEL": "WARNING",
        "COLUMNS": "200",
        "DATABASE_URL": world.settings.effective_database_url,
    }
    return subprocess.run(
        [sys.executable, "-m", "tradeloop", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )


def session_column(out: str, index: int) -> dict[str, str]:
    """Session name -> the ``index``-th column (1 = name) of ``tradeloop live sessions``."""
    rows = {}
    for line in out.splitlines():
        cells = [c.strip() for c in line.split("│")]
        if len(cells) > index + 1 and cells[1] and cells[1] != "name":
            rows[cells[1]] = cells[index]
    return rows


def listed(out: str) -> dict[str, str]:
    """Session name -> status, from ``tradeloop live sessions``."""
    return session_column(out, 2)


@pytest.fixture
def own_db(trained_world: World, tmp_path: Path) -> World:
    settings = make_settings(trained_world.root, DATABASE_URL=f"sqlite:///{tmp_path / 'ops.db'}")
    return World(trained_world.root, settings, trained_world.candles, trained_world.champion)


def test_finished_stale_running_and_stopped_as_the_cli_and_the_dashboard_show_them(
    own_db: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(ROOT / "app"))  # the dashboard's pages import it so
    import sources

    world = own_db
    ts = world.candles.filter(pl.col("symbol") == SYMBOLS[0])["ts"]
    asyncio.run(run_session(world.settings, SessionConfig(name="replayed", start=int(ts[-20]))))
    asyncio.run(run_session(world.settings, SessionConfig(name="cut-short", start=int(ts[-20])), max_bars=5))

    async def follow() -> tuple[str, str]:
        """A following engine: it beats while it waits for candles, and `stop` ends it."""
        config = SessionConfig(name="waiting", start=int(ts[-5]), follow_s=600.0)
        run = asyncio.create_task(run_session(world.settings, config, engine_config=EngineConfig(heartbeat_s=0.1)))
        store = OpsStore.open(world.settings.effective_database_url)
        deadline = time.monotonic() + 120

        def row():
            return next((s for s in store.sessions() if s.name == "waiting"), None)

        while (r := row()) is None or r.last_bar_ts != int(ts[-1]) or r.heartbeat_at is None:
            assert time.monotonic() < deadline and not run.done(), "the replay never caught up"
            await asyncio.sleep(0.05)
        first_beat = r.heartbeat_at
        while (r := row()).heartbeat_at == first_beat:  # no bar comes, the heartbeat does
            assert time.monotonic() < deadline and not run.done(), "no heartbeat between bars"
            await asyncio.sleep(0.05)
        assert r.last_bar_ts == int(ts[-1])
        shown = tradeloop(world, "live", "sessions")
        dashboard = sources.sessions_frame(store)
        store.set_status("waiting", "stopped")  # `tradeloop live stop waiting`
        engine = await asyncio.wait_for(run, timeout=60)  # the waiting engine notices and exits
        assert engine.bars == 5
        store.close()
        return listed(shown.stdout)["waiting"], dict(dashboard.select("session", "status").rows())["waiting"]

    cli_while_waiting, dashboard_while_waiting = asyncio.run(follow())
    assert cli_while_waiting == dashboard_while_waiting == "running"
    out = tradeloop(world, "live", "sessions")
    assert out.returncode == 0, out.stderr
    expected = {"replayed": "finished", "cut-short": "stale", "waiting": "stopped"}
    assert listed(out.stdout) == expected
    store = OpsStore.open(world.settings.effective_database_url)
    assert dict(sources.sessions_frame(store).select("session", "status").rows()) == expected
    assert store.session("replayed").status == "finished"
    store.close()
    # a finished replay resumes when asked (the lake may have grown): no new bar here, finished again
    engine = asyncio.run(run_session(world.settings, SessionConfig(name="replayed", start=int(ts[-20]))))
    assert engine.bars == 0 and engine.store.session("replayed").status == "finished"
    events = [e.event for e in engine.store.audit_log(engine.session.id) if e.event.startswith("session_")]
    assert events == ["session_started", "session_finished", "session_running", "session_finished"]


def test_live_run_on_a_series_without_data_exits_3_and_creates_no_session(own_db: World) -> None:
    out = tradeloop(own_db, "live", "run", "--name", "nodata", "--symbol", "DOGE-USD", "--symbol", "BTC-USD")
    assert out.returncode == 3, out.stdout + out.stderr
    text = " ".join(out.stderr.split())
    assert "no candles in the lake for coinbase:DOGE-USD:4h; the lake has: " in text
    assert "coinbase:BTC-USD:4h" in text and "coinbase:ETH-USD:4h" in text
    late = tradeloop(own_db, "live", "run", "--name", "nodata", "--start", "2100-01-01")
    assert late.returncode == 3, late.stdout + late.stderr
    assert "have no candles between --start" in " ".join(late.stderr.split())
    engine = sa.create_engine(own_db.settings.effective_database_url)
    with engine.connect() as conn:
        tables = sa.inspect(conn).get_table_names()
        assert "sessions" not in tables or conn.execute(sa.text("SELECT count(*) FROM sessions")).scalar() == 0
    engine.dispose()
