"""Structured logs (tradeloop.logs): JSON lines with the correlation ids, no secret in any field,
a rotated file; readable text with nothing set. The engine and the API are run for real."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import structlog

from tests.api.conftest import free_port
from tradeloop.logs import TextFormatter, bound_ids, json_formatter
from tradeloop.redaction import MASK, register_secret

ROOT = Path(__file__).resolve().parents[2]
SECRET = "exchange-secret-4f9a2c"  # what TRADELOOP_EXCHANGE_SECRET holds in the processes below


def capture(formatter: logging.Formatter) -> tuple[logging.Logger, io.StringIO]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    logger = logging.getLogger(f"tradeloop.test.logs.{id(out)}")
    logger.handlers[:] = [handler]
    logger.propagate, logger.level = False, logging.DEBUG
    return logger, out


def test_no_field_of_a_json_line_holds_a_secret() -> None:
    register_secret(SECRET)
    logger, out = capture(json_formatter(service="test"))
    with bound_ids(session=f"s-{SECRET}", client_order_id="tl1-1-BTCUSD-en", run_id=None):
        logger.warning(
            "sending with %s failed",
            SECRET,
            extra={
                "api_key": "an-unregistered-key",  # a credential-named field: masked whole
                "detail": {"headers": {"X-API-Key": "k-123456"}, "url": "https://x/?signature=abcdef", "n": 3},
                "attempts": [f"secret={SECRET}", 2],
            },
        )
        try:
            raise RuntimeError(f"refused {SECRET}")
        except RuntimeError:
            logger.exception("the create failed")
    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    assert SECRET not in out.getvalue() and "an-unregistered-key" not in out.getvalue()
    assert first["event"] == f"sending with {MASK} failed" and first["level"] == "warning"
    assert first["session"] == f"s-{MASK}" and first["client_order_id"] == "tl1-1-BTCUSD-en"
    assert "run_id" not in first  # None ids are left out
    assert first["api_key"] == MASK and first["detail"]["headers"]["X-API-Key"] == MASK
    assert first["detail"]["url"] == f"https://x/?signature={MASK}" and first["detail"]["n"] == 3
    assert first["attempts"] == [f"secret={MASK}", 2]
    assert first["service"] == "test" and first["pid"] == os.getpid() and first["timestamp"].endswith("Z")
    assert second["exception"].startswith("Traceback") and f"RuntimeError: refused {MASK}" in second["exception"]


def test_text_lines_read_as_before_with_the_bound_ids_at_the_end() -> None:
    logger, out = capture(TextFormatter("%(levelname)s %(name)s: %(message)s"))
    logger.info("no ids bound")
    with bound_ids(session="paper", job_id=7):
        logger.info("two bound")
    plain, tagged = out.getvalue().splitlines()
    assert plain == f"INFO {logger.name}: no ids bound"
    assert tagged == f"INFO {logger.name}: two bound [job_id=7 session=paper]"


def python(code: str, *, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=cwd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done


def clean_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADELOOP_")}
    env.pop("DATABASE_URL", None)
    env.pop("REDIS_URL", None)
    return env | {"TRADELOOP_DATA_DIR": str(tmp_path / "data"), "TRADELOOP_EXCHANGE_SECRET": SECRET} | extra


def test_the_log_file_rotates_and_a_structlog_logger_writes_to_it(tmp_path: Path) -> None:
    log_file = tmp_path / "logs" / "tradeloop.log"
    env = clean_env(
        tmp_path,
        TRADELOOP_LOG_FORMAT="json",
        TRADELOOP_LOG_FILE=str(log_file),
        TRADELOOP_LOG_MAX_MB="0.01",  # about 10 kB a file
        TRADELOOP_LOG_BACKUPS="2",
    )
    code = (
        "import logging, structlog\n"
        "from tradeloop.logs import configure_logging\n"
        "from tradeloop.settings import get_settings\n"
        "configure_logging(get_settings(), service='rotation')\n"
        "for i in range(400): logging.getLogger('tradeloop.x').info('line %d of the rotation test', i)\n"
        "structlog.get_logger('tradeloop.y').info('native', token='abc-def-1234', n=1)\n"
    )
    done = python(code, env=env, cwd=tmp_path)
    assert done.stderr == ""  # the file only
    files = sorted(p.name for p in log_file.parent.iterdir())
    assert files == ["tradeloop.log", "tradeloop.log.1", "tradeloop.log.2"]
    assert all(p.stat().st_size <= 11_000 for p in log_file.parent.iterdir())
    lines = [json.loads(line) for line in log_file.read_text().splitlines()]
    assert lines[-2]["event"] == "line 399 of the rotation test" and lines[-2]["service"] == "rotation"
    assert lines[-1] == {**lines[-1], "event": "native", "token": MASK, "n": 1, "logger": "tradeloop.y"}


def test_the_engine_logs_json_lines_carrying_its_session_and_no_secret(tmp_path: Path) -> None:
    env = clean_env(tmp_path, TRADELOOP_LOG_FORMAT="json", TRADELOOP_LOG_LEVEL="INFO")
    subprocess.run([sys.executable, "-m", "tradeloop", "data", "import"], env=env, cwd=ROOT, check=True,
                   capture_output=True, timeout=120)  # fmt: skip
    session = f"run-{SECRET}"  # a secret where nobody expects one: in the session's name
    done = subprocess.run(
        [sys.executable, "-m", "tradeloop", "live", "run", "--name", session, "--recent-days", "2"],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stderr.splitlines()]
    finished = [r for r in lines if r["event"].endswith("finished (the end of its data)")]
    assert finished and finished[0]["session"] == f"run-{MASK}" and finished[0]["service"] == "engine"
    assert finished[0]["logger"] == "live.engine_lifecycle" and finished[0]["level"] == "info"
    assert SECRET not in done.stderr

    text = subprocess.run(  # nothing set: readable lines, as before, the session at the end
        [sys.executable, "-m", "tradeloop", "live", "run", "--name", "plain", "--recent-days", "2"],
        env=clean_env(tmp_path, TRADELOOP_LOG_LEVEL="INFO"), cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert text.returncode == 0, text.stderr
    assert " INFO live.engine_lifecycle: session plain: finished (the end of its data) [session=plain]" in text.stderr


def test_the_api_binds_a_request_id_echoes_it_and_logs_it(tmp_path: Path) -> None:
    port = free_port()
    log_file = tmp_path / "api.log"
    env = clean_env(tmp_path, TRADELOOP_LOG_FORMAT="json", TRADELOOP_LOG_FILE=str(log_file), TRADELOOP_LOG_LEVEL="INFO")
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", "api.app:create_app", "--port", str(port)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                given = httpx.get(f"{url}/ready?token=hunter2-not-logged", headers={"X-Request-ID": "req-abc.1"})
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline and server.poll() is None, "the API did not start"
                time.sleep(0.2)
        made = httpx.get(f"{url}/health")
        refused = httpx.get(f"{url}/health", headers={"X-Request-ID": "no spaces; " + "x" * 200})
        failed = httpx.post(f"{url}/auth/login", json={"username": "nobody", "password": SECRET})
    finally:
        server.terminate()
        out, _ = server.communicate(timeout=30)
    assert given.status_code == 200 and given.headers["X-Request-ID"] == "req-abc.1"
    assert len(made.headers["X-Request-ID"]) == 32 and refused.headers["X-Request-ID"] != made.headers["X-Request-ID"]
    assert len(refused.headers["X-Request-ID"]) == 32 and failed.status_code == 401
    assert "Traceback" not in out
    lines = [json.loads(line) for line in log_file.read_text().splitlines()]
    access = [r for r in lines if r["logger"] == "uvicorn.access"]
    assert [r["request_id"] for r in access] == [r.headers["X-Request-ID"] for r in (given, made, refused, failed)]
    assert '"GET /ready?token=*** HTTP/1.1" 200' in access[0]["event"] and access[0]["service"] == "api"
    started = [r for r in lines if r["logger"] == "uvicorn.error" and "request_id" not in r]
    assert started, "uvicorn's own lines go to the same file"
    assert "hunter2" not in log_file.read_text() and SECRET not in log_file.read_text()


@pytest.fixture(autouse=True)
def _structlog_defaults():
    yield
    structlog.reset_defaults()
