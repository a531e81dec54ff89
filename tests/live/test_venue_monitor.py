"""The venue monitor against the loopback Binance with the real ccxt: clock skew from
``fetch_time``, the venue's status from ``fetch_status`` (Binance's ``/sapi/v1/system/status``),
and every venue's snapshot written to the real operational database (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from exchange_server import BinanceLoopback, rate_limited

from live.venue_monitor import MonitorConfig, VenueMonitor
from tradeloop.data.exchanges import make_exchange
from tradeloop.observability.venues import VenueHealth
from tradeloop.ops import OpsStore
from tradeloop.ops.market_store import MarketStore


@dataclass
class SkewedBinance(BinanceLoopback):
    """The loopback Binance whose server clock is ``skew_ms`` ahead of ours, with Binance's
    system status endpoint (0: normal, 1: system maintenance)."""

    skew_ms: int = 0
    system_status: int = 0

    def unsigned(self, method: str, path: str, params: dict[str, str], raw_path: str) -> tuple | None:
        if method == "GET" and path == "/api/v3/time":
            return 200, {"serverTime": int(time.time() * 1000) + self.skew_ms}
        if method == "GET" and path == "/sapi/v1/system/status":
            return 200, {"status": self.system_status, "msg": ["normal", "system_maintenance"][self.system_status]}
        return super().unsigned(method, path, params, raw_path)


@pytest.fixture(params=["sqlite", "postgresql"])
def market(request, tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'ops.db'}" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    store = OpsStore.open(url)
    yield MarketStore(store)
    store.close()


def test_skew_and_maintenance_lower_the_score_and_snapshots_reach_the_database(market: MarketStore) -> None:
    health = VenueHealth()

    async def rounds(server: SkewedBinance) -> list[float]:
        client = make_exchange("binance", timeout_s=5, api_url=server.url, asynchronous=True, health=health)
        monitor = VenueMonitor({"binance": client}, market=market, health=health)
        scores = []
        try:
            for skew_ms, status in ((0, 0), (3_000, 0), (0, 1), (0, 0)):
                server.skew_ms, server.system_status = skew_ms, status
                assert await monitor.round() == 1
                scores.append(health.score("binance"))
        finally:
            await client.close()
        return scores

    with SkewedBinance({}) as server:
        scores = asyncio.run(rounds(server))
        paths = [r.split("?")[0] for r in server.requests]
    assert paths.count("/api/v3/time") == 4 and paths.count("/sapi/v1/system/status") == 4
    assert scores[0] == pytest.approx(1.0, abs=0.02)  # a loopback clock: well under 1 s apart
    assert scores[1] == pytest.approx(0.5, abs=0.05)  # 3 s ahead: halfway from 1 s to 5 s
    assert scores[2] == 0.0  # maintenance
    assert scores[3] == pytest.approx(1.0, abs=0.02)
    (row,) = market.health()
    assert row.venue == "binance" and row.status == "ok" and row.score == pytest.approx(scores[3], abs=1e-6)
    assert row.figures["calls"] == 8 and abs(row.figures["clock_skew_s"]) < 0.2
    assert set(row.figures["factors"]) == {"availability", "latency", "freshness", "clock", "stability", "status"}


def test_a_failed_probe_counts_against_the_venue_and_the_monitor_runs_on(market: MarketStore) -> None:
    health = VenueHealth()

    async def run(server: SkewedBinance) -> None:
        client = make_exchange("binance", timeout_s=5, api_url=server.url, asynchronous=True, health=health)
        monitor = VenueMonitor({"binance": client}, market=market, health=health, config=MonitorConfig(probe_s=0.05))
        stop = asyncio.Event()
        task = asyncio.create_task(monitor.run(stop))
        try:
            while len([r for r in server.requests if r.startswith("/api/v3/time")]) < 3:
                await asyncio.sleep(0.02)
        finally:
            stop.set()
            await task
            await client.close()

    with SkewedBinance({}) as server:
        original = server.unsigned
        calls = {"n": 0}

        def first_time_limited(method, path, params, raw_path):
            if path == "/api/v3/time":
                calls["n"] += 1
                if calls["n"] == 1:  # the first probe is rate limited
                    fault = rate_limited()
                    return fault.status, fault.body, {"Retry-After": "1"}
            return original(method, path, params, raw_path)

        server.unsigned = first_time_limited  # type: ignore[method-assign]
        asyncio.run(run(server))
    snap = health.snapshot("binance")
    assert snap.rate_limit_hits == 1 and snap.clock_skew_s is not None and snap.status == "ok"
    (row,) = market.health()
    assert row.figures["rate_limit_hits"] == 1 and row.score < 1.0
