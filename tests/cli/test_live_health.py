"""`tradeloop live health NAME`: exit 0 while the session's engine beats, 1 for anything else."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from tradeloop.cli.health_cmd import engine_health
from tradeloop.ops import OpsStore, TradingSession
from tradeloop.ops.models import utcnow

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def store(tmp_path: Path):
    store = OpsStore.open(f"sqlite:///{tmp_path / 'data' / 'tradeloop.db'}")
    session = store.create_session(
        name="paper", strategy="sma_cross", exchange="coinbase", timeframe="4h", symbols=["BTC-USD"],
        mode="paper", init_cash=10_000.0, config={},
    )  # fmt: skip
    store.beat(session.id)
    yield store
    store.close()


def heartbeat(store: OpsStore, *, seconds_ago: float | None, status: str | None = None) -> None:
    values: dict = {"heartbeat_at": None if seconds_ago is None else utcnow() - timedelta(seconds=seconds_ago)}
    if status:
        values["status"] = status
    with store.transaction() as db:
        db.execute(sa.update(TradingSession).where(TradingSession.name == "paper").values(**values))


def test_a_fresh_heartbeat_is_healthy_and_anything_else_is_not(store: OpsStore) -> None:
    url = store.engine.url.render_as_string()

    def health(name: str = "paper", **kw) -> tuple[bool, str]:
        return engine_health(name, database_url=url, **kw)

    ok, why = health()
    assert ok and why.startswith("session 'paper': running, heartbeat ")
    heartbeat(store, seconds_ago=100)
    ok, why = health(max_age_s=60)
    assert not ok and re.fullmatch(
        r"session 'paper': stale, heartbeat 10\d s ago, last bar - \(stale after 60 s\)", why
    )
    assert health(max_age_s=120)[0]
    heartbeat(store, seconds_ago=5, status="paused")  # paused: the engine runs, it only opens nothing
    assert health()[0]
    heartbeat(store, seconds_ago=None, status="running")  # the engine exited and cleared it
    assert health() == (False, "session 'paper': stale, no heartbeat (no engine runs it), last bar -")
    heartbeat(store, seconds_ago=1, status="stopped")
    assert not health()[0] and "stopped" in health()[1]
    assert health("other") == (False, "no session named 'other'")
    down = engine_health("paper", database_url="postgresql+psycopg://postgres@127.0.0.1:1/x", timeout_s=1)
    assert not down[0] and down[1].startswith("the operational database did not answer: OperationalError")


def test_the_command_exits_0_or_1_and_says_why(store: OpsStore, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env["TRADELOOP_DATA_DIR"] = str(tmp_path / "data")

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "tradeloop", "live", "health", *args],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)  # fmt: skip

    alive = run("paper")
    assert alive.returncode == 0 and "session 'paper': running, heartbeat " in alive.stdout, alive.stderr
    heartbeat(store, seconds_ago=400)
    stale = run("paper", "--max-age", "300")
    assert stale.returncode == 1 and stale.stdout == ""
    assert re.fullmatch(
        r"session 'paper': stale, heartbeat 4\d\d s ago, last bar - \(stale after 300 s\)\n", stale.stderr
    )
    quiet = run("paper", "-q")
    assert quiet.returncode == 1 and quiet.stdout == quiet.stderr == ""
    env["TRADELOOP_DATA_DIR"] = str(tmp_path / "elsewhere")
    nowhere = run("paper")
    assert nowhere.returncode == 1 and "no operational database at" in nowhere.stderr
    assert not (tmp_path / "elsewhere").exists()  # a health check makes nothing
