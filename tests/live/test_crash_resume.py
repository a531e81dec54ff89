"""kill -9 in the middle of a session, restart: it resumes, reconciles, loses and duplicates nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import sqlalchemy as sa

from tests.live.conftest import SYMBOLS, World, assert_matches_backtest

ROOT = Path(__file__).resolve().parents[2]
BARS = 1000


def live_run(world: World, *, start: int) -> subprocess.Popen:
    env = {
        **os.environ,
        "TRADELOOP_DATA_DIR": str(world.root),
        "TRADELOOP_LOG_LEVEL": "WARNING",
        "DATABASE_URL": world.settings.database_url or "",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "tradeloop", "live", "run", "--name", "crash", "--start", str(start)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def bars_done(world: World, start: int) -> int:
    engine = sa.create_engine(world.settings.effective_database_url)
    try:
        with engine.connect() as conn:
            last = conn.execute(sa.text("SELECT last_bar_ts FROM sessions WHERE name = 'crash'")).scalar()
    except sa.exc.DBAPIError:  # tables not created yet
        return 0
    finally:
        engine.dispose()
    return 0 if last is None else (last - start) // (4 * 3_600_000) + 1


def test_kill_9_then_restart_resumes_without_loss_or_duplicates(world: World) -> None:
    start = int(world.candles.filter(pl.col("symbol") == SYMBOLS[0])["ts"][-BARS])
    kills = 0
    for at in (150, 500):  # two crashes at different points of the replay
        proc = live_run(world, start=start)
        deadline = time.monotonic() + 120
        while bars_done(world, start) < at and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None, f"the session ended before the kill: {proc.stdout.read()}"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        kills += 1
        assert proc.returncode == -signal.SIGKILL
    final = live_run(world, start=start)
    out, _ = final.communicate(timeout=300)
    assert final.returncode == 0, out
    assert kills == 2 and bars_done(world, start) >= BARS
    assert_matches_backtest(world, "crash", start=start)


def test_restart_with_an_order_in_flight_reconciles_it(world: World) -> None:
    """The process dies after an order was committed and sent but before it filled: the new
    process rebuilds the paper book from the database and the order fills exactly once."""
    import asyncio

    from live.runner import SessionConfig, build_engine, replay_feed

    start = int(world.candles.filter(pl.col("symbol") == SYMBOLS[0])["ts"][-BARS])
    config = SessionConfig(name="inflight", start=start)

    async def until_order_in_flight() -> str:
        engine = build_engine(world.settings, config)
        async for batch in replay_feed(world.settings, config).batches():
            if engine.window.is_empty():
                engine.window = replay_feed(world.settings, config).history(before_ts=batch.ts, bars=400)
            await engine.on_batch(batch)
            in_flight = engine.store.orders(engine.session.id, statuses=("acknowledged",))
            if in_flight and engine.bars > 100:
                return in_flight[0].client_order_id  # the engine object is dropped here: a crash
        raise AssertionError("no order was ever in flight")

    pending = asyncio.run(until_order_in_flight())
    engine = build_engine(world.settings, config)
    asyncio.run(engine.run(replay_feed(world.settings, config)))
    events = [e for e in engine.store.audit_log(engine.session.id) if e.event == "order_reconciled"]
    assert [e.detail["client_order_id"] for e in events] == [pending]
    assert [o.status for o in engine.store.orders(engine.session.id) if o.client_order_id == pending] == ["filled"]
    assert_matches_backtest(world, "inflight", start=start)
