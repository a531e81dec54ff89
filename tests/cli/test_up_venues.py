"""`tradeloop up --market-data ...` also runs the market-data service (real ccxt against the
loopback Binance WebSocket and REST servers, publishing on the real Redis) and reports it ready
once its /metrics answers; without its options it does not run, and it refuses to run without
Redis."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import psutil
import redis
from exchange_server import BinanceLoopback
from ws_exchange_server import BinanceWsLoopback

from tests.cli.test_up import free_port
from tests.conftest import REDIS_URL, redis_prefix  # noqa: F401 - redis_prefix is a fixture
from tests.live.test_ccxt_feed import rows
from tests.live.test_feed_gaps import serve_rest
from tradeloop.bus import market_stream, price_key
from tradeloop.cli.up_cmd import service_commands
from tradeloop.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def test_up_runs_the_market_data_service_it_is_given_and_reports_it_ready(tmp_path: Path, redis_prefix: str) -> None:
    script = {"BTCUSDT": rows(40, 3)}
    port, metrics = free_port(), free_port()
    client = redis.Redis.from_url(REDIS_URL)
    with BinanceLoopback(candles={}) as rest, BinanceWsLoopback(script, pace_s=0.2) as ws:
        serve_rest(rest, script)
        env = {
            **os.environ,
            "TRADELOOP_DATA_DIR": str(tmp_path / "data"),
            "REDIS_URL": REDIS_URL,
            "TRADELOOP_REDIS_PREFIX": redis_prefix,
            "TRADELOOP_EXCHANGE_API_URL": rest.url,
            "TRADELOOP_EXCHANGE_WS_URL": ws.url,
            "TRADELOOP_LOG_LEVEL": "WARNING",
            "COLUMNS": "250",
        }
        proc = subprocess.Popen(
            [sys.executable, "-m", "tradeloop", "up", "--only", "api", "--only", "market-data",
             "--api-port", str(port), "--api-workers", "1", "--metrics-port", str(metrics - 3),
             "--market-data", "--exchange binance --symbol BTC-USDT --timeframe 1m"],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True)
        reader.start()
        try:
            deadline = time.monotonic() + 120
            while "Ctrl-C stops every service" not in "".join(lines) and time.monotonic() < deadline:
                assert proc.poll() is None, "".join(lines)
                time.sleep(0.5)
            table = [line for line in lines if "market-data" in line and "│" in line]
            assert table and " up " in table[0], "".join(lines)  # its /metrics answered
            assert "tradeloop_venue" in httpx.get(f"http://127.0.0.1:{metrics}/metrics", timeout=5).text
            cached = None
            while cached is None and time.monotonic() < deadline:  # a closed candle reached the bus
                cached = client.hget(f"{redis_prefix}:prices", price_key("binance", "BTC-USDT"))
                time.sleep(0.2)
            assert cached is not None, "".join(lines)
            assert client.xlen(f"{redis_prefix}:{market_stream('binance', '1m')}") > 0
            children = psutil.Process(proc.pid).children(recursive=True)
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=60)
            reader.join(timeout=10)
    _, alive = psutil.wait_procs(children, timeout=30)
    assert not alive, [p.cmdline() for p in alive]


def test_the_venue_services_run_only_when_given_and_the_market_data_one_needs_redis(tmp_path: Path) -> None:
    plain = dict(lab=1, dagster=2, dashboard=3, speed=1.0, lab_token="t")
    assert not {"market-data", "arbitrage"} & set(service_commands(**plain))
    given = service_commands(
        **plain, market_data="--exchange kraken --symbol 'BTC USD'", arbitrage="--venue a --venue b"
    )
    assert given["market-data"][0].endswith("-m tradeloop market-data run --exchange kraken --symbol 'BTC USD'")
    assert given["arbitrage"][0].endswith("-m tradeloop arbitrage run --venue a --venue b")
    for wrong in ("binance", "", "  "):
        try:
            service_commands(**plain, market_data=wrong)
        except ConfigError as exc:
            assert f"--market-data {wrong!r}" in str(exc) and "--exchange binance" in str(exc)
        else:
            raise AssertionError(f"{wrong!r} was taken for the service's options")
    env = {**os.environ, "TRADELOOP_DATA_DIR": str(tmp_path / "data")}
    env.pop("REDIS_URL", None)
    done = subprocess.run(
        [sys.executable, "-m", "tradeloop", "up", "--only", "api", "--market-data", "--exchange binance"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2 and "REDIS_URL" in done.stdout + done.stderr
    done = subprocess.run(
        [sys.executable, "-m", "tradeloop", "up", "--only", "arbitrage"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2 and "--arbitrage" in done.stdout + done.stderr  # not offered without its options
