"""deploy/supervisor/tradeloop.conf under a real supervisord (Debian's, installed by
tests/services/ensure.sh), as written: its variables point it at temporary folders, free ports
and a PostgreSQL database of its own. It starts the engine (a paper session replaying the lake's
last bars, then following it), the API, a worker and the dashboard; the engine, killed twice
with SIGKILL in the middle of its replay, and the API, killed once, come back by themselves; the
engine resumes after its last committed bar and ends with the orders and fills of an
uninterrupted run of the same bars: none lost, none twice. ``tradeloop live health`` says
healthy while it runs and not after supervisord stops it."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import polars as pl
import psutil
import pytest
import sqlalchemy as sa

from tests.conftest import REDIS_URL, redis_prefix, throwaway_database  # noqa: F401 - redis_prefix is a fixture
from tests.live.conftest import SYMBOLS, World, trained_world  # noqa: F401 - shared fixture

ROOT = Path(__file__).resolve().parents[2]
CONF = ROOT / "deploy" / "supervisor" / "tradeloop.conf"
SESSION = "supervised"
BARS = 1000
BAR_MS = 4 * 3_600_000
PROGRAMS = ("engine", "api", "worker", "dashboard", "research-metrics")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as reply:
            return reply.status == 200
    except OSError:
        return False


def wait_for(what: str, check: Callable[[], object], *, timeout_s: float, logs: Path) -> object:
    deadline = time.monotonic() + timeout_s
    while not (result := check()):
        if time.monotonic() > deadline:
            tails = "\n".join(f"--- {p.name}\n{p.read_text()[-2000:]}" for p in sorted(logs.glob("*.log")))
            raise AssertionError(f"timed out waiting for {what}\n{tails}")
        time.sleep(0.2)
    return result


def bars_done(database: str, start: int) -> int:
    engine = sa.create_engine(database)
    try:
        with engine.connect() as conn:
            last = conn.execute(sa.text("SELECT last_bar_ts FROM sessions WHERE name = :n"), {"n": SESSION}).scalar()
    except sa.exc.DBAPIError:  # not created yet
        return 0
    finally:
        engine.dispose()
    return 0 if last is None else (last - start) // BAR_MS + 1


def orders_and_fills(database: str) -> tuple[list[tuple], list[tuple]]:
    engine = sa.create_engine(database)
    with engine.connect() as conn:
        orders = conn.execute(
            sa.text(
                "SELECT client_order_id, symbol, side, intent, quantity, status FROM orders ORDER BY client_order_id"
            )
        ).all()
        fills = conn.execute(
            sa.text(
                "SELECT o.client_order_id, f.ts, f.side, f.quantity, f.price FROM fills f "
                "JOIN orders o ON o.id = f.order_id ORDER BY o.client_order_id, f.ts"
            )
        ).all()
    engine.dispose()
    return [tuple(o) for o in orders], [tuple(f) for f in fills]


@pytest.fixture
def database() -> Iterator[str]:
    """The programs' operational database: PostgreSQL, as a supervised deployment runs (four
    processes writing one SQLite file wait on its lock under load)."""
    with throwaway_database("tradeloop_supervised") as url:
        yield url


def test_supervisord_restarts_a_killed_engine_which_loses_and_repeats_no_order(
    trained_world: World,
    redis_prefix: str,
    database: str,
    tmp_path: Path,
) -> None:
    supervisord, supervisorctl = shutil.which("supervisord"), shutil.which("supervisorctl")
    assert supervisord and supervisorctl, "supervisord is missing: run tests/services/ensure.sh (Debian's supervisor)"
    start = int(trained_world.candles.filter(pl.col("symbol") == SYMBOLS[0])["ts"][-BARS])
    ports = {name: free_port() for name in ("api", "dashboard", "engine_metrics", "worker_metrics", "research")}
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADELOOP_")} | {
        "TRADELOOP_HOME": str(ROOT),
        "TRADELOOP_RUN_DIR": str(run_dir),
        "TRADELOOP_SESSION": SESSION,
        "TRADELOOP_ENGINE_ARGS": f"--start {start}",
        "TRADELOOP_ENGINE_METRICS_PORT": str(ports["engine_metrics"]),
        "TRADELOOP_WORKER_METRICS_PORT": str(ports["worker_metrics"]),
        "TRADELOOP_API_HOST": "127.0.0.1",
        "TRADELOOP_API_PORT": str(ports["api"]),
        "TRADELOOP_API_WORKERS": "1",
        "TRADELOOP_DASHBOARD_PORT": str(ports["dashboard"]),
        "TRADELOOP_RESEARCH_METRICS_PORT": str(ports["research"]),
        # the programs' settings
        "TRADELOOP_DATA_DIR": str(trained_world.root),
        "DATABASE_URL": database,
        "REDIS_URL": REDIS_URL,
        "TRADELOOP_REDIS_PREFIX": redis_prefix,
        "TRADELOOP_LOG_LEVEL": "WARNING",
    }

    def ctl(*args: str) -> str:
        done = subprocess.run(
            [supervisorctl, "-c", str(CONF), *args], env=env, capture_output=True, text=True, timeout=60
        )
        return done.stdout

    def pid(program: str) -> int:
        out = ctl("pid", program).strip()
        return int(out) if out.isdigit() and out != "0" else 0

    def healthy() -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "tradeloop", "live", "health", SESSION, "--max-age", "60"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip

    server = subprocess.Popen(
        ["nice", "-n", "19", supervisord, "-n", "-c", str(CONF)],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        api = f"http://127.0.0.1:{ports['api']}"
        wait_for("the API ready", lambda: answers(f"{api}/ready"), timeout_s=90, logs=run_dir)
        wait_for("the worker's /metrics", lambda: answers(f"http://127.0.0.1:{ports['worker_metrics']}/metrics"),
                 timeout_s=60, logs=run_dir)  # fmt: skip
        wait_for("the dashboard", lambda: answers(f"http://127.0.0.1:{ports['dashboard']}/_stcore/health"),
                 timeout_s=60, logs=run_dir)  # fmt: skip
        research = f"http://127.0.0.1:{ports['research']}/metrics"
        wait_for("the research exporter", lambda: answers(research), timeout_s=60, logs=run_dir)
        with urllib.request.urlopen(research, timeout=5) as reply:  # the trained world's champion
            assert b"tradeloop_champion_promoted_timestamp_seconds{" in reply.read()
        kills = []
        for at in (250, 600):  # SIGKILL in the middle of the replay, twice
            wait_for(f"bar {at}", lambda at=at: bars_done(database, start) >= at, timeout_s=120, logs=run_dir)
            killed = pid("engine")
            assert killed and bars_done(database, start) < BARS, "the replay ended before the kill"
            os.kill(killed, signal.SIGKILL)
            kills.append(killed)
            wait_for("the engine restarted", lambda killed=killed: pid("engine") not in (0, killed),
                     timeout_s=60, logs=run_dir)  # fmt: skip
        api_pid = pid("api")
        os.kill(api_pid, signal.SIGKILL)
        wait_for("the API back", lambda: pid("api") not in (0, api_pid) and answers(f"{api}/ready"),
                 timeout_s=90, logs=run_dir)  # fmt: skip
        wait_for("every bar", lambda: bars_done(database, start) >= BARS, timeout_s=180, logs=run_dir)
        alive = healthy()
        assert alive.returncode == 0 and "running" in alive.stdout, alive.stdout + alive.stderr
        status = ctl("status")
        assert all(f"{p} " in status for p in PROGRAMS) and status.count("RUNNING") == len(PROGRAMS), status
        children = psutil.Process(server.pid).children(recursive=True)
    finally:
        ctl("shutdown")  # SIGTERM to every program, then supervisord exits
        try:
            out, _ = server.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            server.kill()
            out, _ = server.communicate()
    assert server.returncode == 0, out
    gone, left = psutil.wait_procs(children, timeout=30)
    assert not left, [p.cmdline() for p in left]
    log = (run_dir / "supervisord.log").read_text()
    assert log.count("exited: engine (terminated by SIGKILL; not expected)") == 2, log
    assert log.count("exited: api (terminated by SIGKILL; not expected)") == 1, log
    assert log.count("spawned: 'engine'") >= 3 and log.count("spawned: 'api'") >= 2 and "gave up" not in log, log
    dead = healthy()  # a clean stop clears the heartbeat
    assert dead.returncode == 1 and "no heartbeat" in dead.stderr, dead.stdout + dead.stderr

    # the same bars, uninterrupted, in a database of their own
    reference = f"sqlite:///{tmp_path / 'reference.db'}"
    done = subprocess.run(
        [sys.executable, "-m", "tradeloop", "live", "run", "--name", SESSION, "--start", str(start)],
        cwd=ROOT, env=env | {"DATABASE_URL": reference}, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    supervised_orders, supervised_fills = orders_and_fills(database)
    expected_orders, expected_fills = orders_and_fills(reference)
    assert len(expected_fills) >= 10, "too few trades for the check to mean anything"
    assert supervised_orders == expected_orders  # none lost, none twice, each as the uninterrupted run made it
    assert supervised_fills == expected_fills
    ids = [o[0] for o in supervised_orders]
    assert len(ids) == len(set(ids))
