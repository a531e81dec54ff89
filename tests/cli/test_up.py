"""`tradeloop up` starts every service on 127.0.0.1 and Ctrl-C stops them all."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil

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
    ports = {name: free_port() for name in ("lab", "dagster", "dashboard")}
    env = {**os.environ, "TRADELOOP_DATA_DIR": str(tmp_path / "data"), "DAGSTER_HOME": str(tmp_path / "dagster"),
           "JUPYTER_RUNTIME_DIR": str(tmp_path / "jupyter"), "TRADELOOP_LOG_LEVEL": "WARNING"}
    subprocess.run([sys.executable, "-m", "tradeloop", "data", "import"], cwd=ROOT, env=env, check=True,
                   capture_output=True)
    proc = subprocess.Popen([sys.executable, "-m", "tradeloop", "up", "--lab-port", str(ports["lab"]),
                             "--dagster-port", str(ports["dagster"]), "--dashboard-port", str(ports["dashboard"])],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    urls = {"lab": f"http://127.0.0.1:{ports['lab']}/lab", "dagster": f"http://127.0.0.1:{ports['dagster']}/server_info",
            "dashboard": f"http://127.0.0.1:{ports['dashboard']}/_stcore/health"}
    try:
        deadline = time.monotonic() + 120
        pending = dict(urls)
        while pending and time.monotonic() < deadline and proc.poll() is None:
            pending = {k: u for k, u in pending.items() if not answers(u)}
            time.sleep(0.5)
        assert not pending, f"never answered: {pending}; rc={proc.poll()}"
        database = tmp_path / "data" / "tradeloop.db"
        while not database.exists() and time.monotonic() < deadline:
            time.sleep(0.5)
        assert database.exists()  # the live engine started its paper session
        children = psutil.Process(proc.pid).children(recursive=True)
        assert len(children) >= 4
    finally:
        proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
        out, _ = proc.communicate(timeout=60)
    for port in ports.values():
        assert f"127.0.0.1:{port}" in out  # each service's address was printed
    gone, alive = psutil.wait_procs(children, timeout=30)
    assert not alive, [p.cmdline() for p in alive]
    assert not any(answers(u) for u in urls.values())
