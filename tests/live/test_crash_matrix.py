"""kill -9 at every point of the bar step (``tests/live/crash_at.py``), then a plain restart:
the session ends with the backtest's fills and equity, every order stored once and filled
once, none lost and none sent twice. The risk engine is on (its state is committed with the
bar, so a kill inside the bar leaves it as the last committed bar did)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from tests.live.conftest import SYMBOLS, World, assert_matches_backtest
from tradeloop.ops import OpsStore

ROOT = Path(__file__).resolve().parents[2]
BARS = 600
STAGES = ["settle", "mark", "decide", "risk", "persist", "committed", "sent", "submitted"]


def _run(world: World, name: str, start: int, *, crash: tuple[str, int] | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "TRADELOOP_DATA_DIR": str(world.root), "TRADELOOP_LOG_LEVEL": "WARNING"}
    args = ["live", "run", "--name", name, "--start", str(start), "--risk", "max_drawdown=0.9"]
    command = [sys.executable, "-m", "tradeloop", *args]
    if crash is not None:
        command = [sys.executable, str(ROOT / "tests" / "live" / "crash_at.py"), crash[0], str(crash[1]), "--", *args]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=280)


@pytest.mark.parametrize("stage", STAGES)
def test_kill_9_at_each_stage_then_restart_loses_and_duplicates_nothing(trained_world: World, stage: str) -> None:
    start = int(trained_world.candles.filter(pl.col("symbol") == SYMBOLS[0])["ts"][-BARS])
    name = f"crash-{stage}"
    killed = _run(trained_world, name, start, crash=(stage, 3))
    assert killed.returncode == -signal.SIGKILL, f"{stage}: not killed\n{killed.stdout}\n{killed.stderr}"
    store = OpsStore.open(trained_world.settings.effective_database_url)
    try:
        before = store.session(name)
        assert before.last_bar_ts is not None and before.last_bar_ts < int(trained_world.candles["ts"].max())
        in_flight = [o.status for o in store.orders(before.id) if o.status not in ("filled", "rejected")]
    finally:
        store.close()
    if stage in ("sent", "submitted"):
        assert in_flight, "the kill left an order whose create may have gone out"
    done = _run(trained_world, name, start)
    assert done.returncode == 0, done.stdout + done.stderr
    assert_matches_backtest(trained_world, name, start=start)
