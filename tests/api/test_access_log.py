"""The API as `tradeloop up` serves it (``uvicorn --factory api.app:create_app``) logs one
access line per request, with credentials in the query masked like every other log line."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.api.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]


def test_uvicorn_access_lines_are_written_and_redacted(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "TRADELOOP_DATA_DIR": str(tmp_path / "data"), "TRADELOOP_LOG_LEVEL": "INFO"}
    env.pop("DATABASE_URL", None)
    env.pop("REDIS_URL", None)
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", "api.app:create_app", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and server.poll() is None:
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}/health?token=hunter2-not-logged", timeout=2)
                break
            except httpx.TransportError:
                time.sleep(0.2)
        assert answer.status_code == 200
        assert httpx.get(f"http://127.0.0.1:{port}/sessions", timeout=5).status_code == 401
    finally:
        server.terminate()
        out, _ = server.communicate(timeout=30)
    assert "Logging error" not in out and "Traceback" not in out, out
    assert '"GET /health?token=*** HTTP/1.1" 200' in out, out  # the access line, its token masked
    assert '"GET /sessions HTTP/1.1" 401' in out, out
    assert "hunter2" not in out
