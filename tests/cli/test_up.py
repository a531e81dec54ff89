"""`tradeloop up` starts every service on 127.0.0.1 and Ctrl-C stops them all."""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import httpx
import psutil

from tests.conftest import REDIS_URL, redis_prefix  # noqa: F401 - redis_prefix is a fixture
from tradeloop.cli.up_cmd import announce, process_env
from tradeloop.data import CandleLake, SeriesKey
from tradeloop.ops import EquityPoint, OpsStore, connect
from tradeloop.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


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


def test_up_serves_everything_and_ctrl_c_stops_it_all(tmp_path: Path) -> None:
    ports = {name: free_port() for name in ("lab", "dagster", "dashboard", "api", "metrics")}
    env = {
        **os.environ,
        "TRADELOOP_DATA_DIR": str(tmp_path / "data"),
        "DAGSTER_HOME": str(tmp_path / "dagster"),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "jupyter"),
        "TRADELOOP_LOG_LEVEL": "WARNING",
        "COLUMNS": "200",  # the table of addresses on one line per service
    }
    subprocess.run(
        [sys.executable, "-m", "tradeloop", "data", "import"], cwd=ROOT, env=env, check=True, capture_output=True
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tradeloop",
            "up",
            "--lab-port",
            str(ports["lab"]),
            "--dagster-port",
            str(ports["dagster"]),
            "--dashboard-port",
            str(ports["dashboard"]),
            "--api-port",
            str(ports["api"]),
            "--metrics-port",
            str(ports["metrics"]),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True)
    reader.start()
    urls = {
        "lab": f"http://127.0.0.1:{ports['lab']}/lab",
        "dagster": f"http://127.0.0.1:{ports['dagster']}/server_info",
        "dashboard": f"http://127.0.0.1:{ports['dashboard']}/_stcore/health",
        "api": f"http://127.0.0.1:{ports['api']}/health",
    }
    try:
        deadline = time.monotonic() + 120
        pending = dict(urls)
        while pending and time.monotonic() < deadline and proc.poll() is None:
            pending = {k: u for k, u in pending.items() if not answers(u)}
            time.sleep(0.5)
        stopped = [line for line in lines if " stopped (rc=" in line or "Error" in line]
        assert not pending, f"never answered: {pending}; rc={proc.poll()}; {stopped}"
        database = tmp_path / "data" / "tradeloop.db"
        while not database.exists() and time.monotonic() < deadline:
            time.sleep(0.5)
        assert database.exists()  # the live engine started its paper session
        while "tradeloop up: ready" not in "".join(lines) and time.monotonic() < deadline:
            time.sleep(0.5)
        children = psutil.Process(proc.pid).children(recursive=True)
        assert len(children) >= 5
        ready_api = httpx.get(f"http://127.0.0.1:{ports['api']}/ready", timeout=5)
        assert ready_api.json() == {"status": "ok", "checks": {"database": "ok", "migrations": "ok"}}  # same SQLite
        metrics = httpx.get(f"http://127.0.0.1:{ports['metrics']}/metrics", timeout=5).text  # the engine's own port
        assert 'tradeloop_engine_heartbeat_timestamp_seconds{session="paper"}' in metrics
        assert httpx.get(f"http://127.0.0.1:{ports['api']}/sessions", timeout=5).status_code == 401  # signed in only
    finally:
        proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
        proc.wait(timeout=60)
        reader.join(timeout=10)
    out = "".join(lines)
    for name, port in ports.items():
        assert name == "metrics" or f"127.0.0.1:{port}" in out  # each service's address was printed
    ready = out.index("tradeloop up: ready")  # the addresses come last, after the services' start-up chatter
    assert (
        " lab " in out[:ready] and " dashboard " in out[:ready] and " live " in out[:ready] and " api " in out[:ready]
    )
    table = out[ready:].split("Ctrl-C stops every service.")[0]
    assert table.count(" up ") + table.count(" up│") >= 5 and "not answering" not in table  # live: its heartbeat
    assert f"http://127.0.0.1:{ports['api']} (docs: http://127.0.0.1:{ports['api']}/docs)" in table
    assert "worker" not in table  # no REDIS_URL: the API runs its jobs itself
    store = OpsStore(connect(f"sqlite:///{database}"))
    [session] = store.sessions()
    first_bar = int(store.frame(EquityPoint, session.id)["ts"].min())
    last_candle = CandleLake(tmp_path / "data" / "lake").last_ts(SeriesKey("coinbase", "BTC-USD", "4h"))
    assert last_candle - 30 * 86_400_000 <= first_bar <= last_candle  # recent bars, not 2016
    gone, alive = psutil.wait_procs(children, timeout=30)
    assert not alive, [p.cmdline() for p in alive]
    assert not any(answers(u) for u in urls.values())


def test_the_addresses_table_reads_left_to_right() -> None:
    # every column was right-aligned: short names and URLs floated at the right edge of a wide column
    out = io.StringIO()
    announce(
        where={"lab": "http://127.0.0.1:8888/lab?token=abc", "live": "paper session 'paper': breakout"},
        probes={},
        timeout_s=0,
        out=out,
    )
    rows = {
        line.split("│")[1].strip(): line.split("│")[1:4] for line in out.getvalue().splitlines() if line.count("│") == 4
    }
    assert rows["lab"][0].startswith(" lab ") and rows["lab"][1].startswith(" http://127.0.0.1:8888/lab")
    assert rows["live"][1].startswith(" paper session") and rows["live"][2].startswith(" started")


def test_with_redis_the_api_runs_in_two_processes_that_share_sign_ins(tmp_path: Path, redis_prefix: str) -> None:
    port = free_port()
    env = {
        **os.environ,
        "TRADELOOP_DATA_DIR": str(tmp_path / "data"),
        "REDIS_URL": REDIS_URL,
        "TRADELOOP_REDIS_PREFIX": redis_prefix,
        "TRADELOOP_LOG_LEVEL": "WARNING",
    }
    subprocess.run(
        [sys.executable, "-m", "tradeloop", "users", "create", "ana", "--role", "trader", "--password-stdin"],
        cwd=ROOT, env=env, input="correct horse battery staple", text=True, check=True, capture_output=True,
    )  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "tradeloop", "up", "--only", "api", "--api-port", str(port)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True)
    reader.start()
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while "tradeloop up: ready" not in "".join(lines) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.5)
        assert answers(f"{url}/health"), "".join(lines)
        [server] = [
            p for p in psutil.Process(proc.pid).children(recursive=True) if p.cmdline()[1:3] == ["-m", "uvicorn"]
        ]
        workers = [p for p in server.children() if "spawn_main" in " ".join(p.cmdline())]
        assert len(workers) == 2
        multiproc = Path(server.environ()["PROMETHEUS_MULTIPROC_DIR"])  # their metrics, added up
        token = httpx.post(f"{url}/auth/login", json={"username": "ana", "password": "correct horse battery staple"})
        headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
        for _ in range(20):  # new connections land on either process: both know the signing secret
            assert httpx.get(f"{url}/auth/me", headers=headers, timeout=5).json()["username"] == "ana"
        counted = [
            float(line.rsplit(" ", 1)[1])
            for line in httpx.get(f"{url}/metrics", timeout=5).text.splitlines()
            if line.startswith('tradeloop_api_requests_total{method="GET",route="/auth/me",status="200"}')
        ]
        assert counted == [20.0]  # whichever process answered /metrics, it counted both processes' requests
        assert len(list(multiproc.glob("*.db"))) >= 2
        children = psutil.Process(proc.pid).children(recursive=True)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
        reader.join(timeout=10)
    gone, alive = psutil.wait_procs(children, timeout=30)
    assert not alive, [p.cmdline() for p in alive]
    assert not multiproc.exists()  # removed at exit


def test_each_process_gets_its_own_metrics_port_and_log_file(tmp_path: Path) -> None:
    settings = Settings(TRADELOOP_DATA_DIR=str(tmp_path), TRADELOOP_LOG_FILE=str(tmp_path / "logs" / "tl.log"))
    own = process_env(settings, metrics_port=9101, api_workers=2)
    try:
        assert own["live"]["TRADELOOP_METRICS_PORT"] == "9101" and own["worker"]["TRADELOOP_METRICS_PORT"] == "9102"
        assert "TRADELOOP_METRICS_PORT" not in own["api"]  # the API serves its own /metrics
        multiproc = Path(own["api"]["PROMETHEUS_MULTIPROC_DIR"])
        assert multiproc.is_dir() and not any(multiproc.iterdir())
        files = {name: env["TRADELOOP_LOG_FILE"] for name, env in own.items()}
        assert files["live"] == str(tmp_path / "logs" / "tl-live.log") and len(set(files.values())) == len(own)
        assert own["api"]["TRADELOOP_LOG_MAX_MB"] == "0"  # two processes share it: logrotate rotates it
    finally:
        multiproc.rmdir()
    one = process_env(Settings(TRADELOOP_DATA_DIR=str(tmp_path)), metrics_port=0, api_workers=1)
    assert one["live"]["TRADELOOP_METRICS_PORT"] == "" and one["api"] == {}  # off, even if the shell set one


def test_more_than_one_api_process_needs_redis(tmp_path: Path) -> None:
    env = {**os.environ, "TRADELOOP_DATA_DIR": str(tmp_path / "data")}
    env.pop("REDIS_URL", None)
    done = subprocess.run(
        [sys.executable, "-m", "tradeloop", "up", "--only", "api", "--api-workers", "2"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2 and "REDIS_URL" in done.stdout + done.stderr
