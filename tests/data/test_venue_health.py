"""Exchange health from the real ccxt against the loopback Binance: scripted 429s, 5xx and
slow replies lower the venue's score, which recovers once good calls fill the window; the
WebSocket side counts data and dropped connections; the metrics are exported."""

from __future__ import annotations

import asyncio

import ccxt
import polars as pl
import pytest
from exchange_server import BinanceLoopback, Fault, rate_limited, server_error
from prometheus_client import REGISTRY
from ws_exchange_server import BinanceWsLoopback

from tradeloop.data.exchanges import make_exchange
from tradeloop.observability.venues import HealthConfig, VenueHealth, classify, ramp

WINDOW = HealthConfig(window_calls=10, latency_good_s=2.0, latency_bad_s=4.0)  # a busy machine stays healthy
SLOW = HealthConfig(window_calls=10, latency_good_s=0.3, latency_bad_s=0.6)


def fetch(exchange: ccxt.Exchange, n: int) -> list[str]:
    """``n`` klines calls; the error class of each that failed."""
    failed = []
    for _ in range(n):
        try:
            exchange.fetch_ohlcv("BTC/USDT", "1d", limit=5)
        except ccxt.BaseError as exc:
            failed.append(classify(exc))
    return failed


def test_score_drops_under_429_5xx_and_timeouts_and_recovers(btc_1d: pl.DataFrame) -> None:
    faults = {2: rate_limited(), 3: server_error(503), 4: Fault(200, [], delay_s=1.5), 5: rate_limited()}
    faults |= {6: server_error(502)}
    health = VenueHealth(config=WINDOW)
    with BinanceLoopback({("BTCUSDT", "1d"): btc_1d}, faults=faults) as server:
        exchange = make_exchange("binance", timeout_s=0.6, api_url=server.url, health=health)
        exchange.load_markets()
        assert fetch(exchange, 1) == []
        healthy = health.snapshot("binance")
        assert fetch(exchange, 5) == ["rate_limit", "network", "timeout", "rate_limit", "network"]
        faulty = health.snapshot("binance")
        assert fetch(exchange, WINDOW.window_calls) == []
        recovered = health.snapshot("binance")
    assert healthy.score == pytest.approx(1.0) and healthy.calls == 2  # exchangeInfo, then klines
    assert faulty.errors == {"rate_limit": 2, "timeout": 1, "network": 2, "exchange": 0}
    assert faulty.rate_limit_hits == 2 and faulty.timeout_rate == pytest.approx(1 / 7)
    assert faulty.error_rate == pytest.approx(5 / 7)
    assert faulty.score <= 2 / 7 < healthy.score
    assert faulty.factors["availability"] == pytest.approx(2 / 7)
    assert recovered.calls == WINDOW.window_calls and recovered.error_rate == 0
    assert recovered.score == pytest.approx(1.0) == health.score("binance")


def test_slow_replies_lower_the_latency_factor(btc_1d: pl.DataFrame) -> None:
    slow = {n: Fault(200, [], delay_s=0.7) for n in range(1, 4)}
    health = VenueHealth(config=SLOW)
    with BinanceLoopback({("BTCUSDT", "1d"): btc_1d}, faults=slow) as server:
        exchange = make_exchange("binance", timeout_s=5, api_url=server.url, health=health)
        exchange.load_markets()
        assert fetch(exchange, 3) == []
        snap = health.snapshot("binance")
    assert snap.p95_s is not None and snap.p95_s >= 0.7 and snap.p50_s is not None and snap.p50_s >= 0.7
    assert snap.factors["latency"] == 0.0 and snap.factors["availability"] == 1.0
    assert snap.score == 0.0


def test_exchange_errors_are_counted_but_do_not_lower_the_score(btc_1d: pl.DataFrame) -> None:
    health = VenueHealth(config=WINDOW)
    with BinanceLoopback({("BTCUSDT", "1d"): btc_1d}) as server:
        exchange = make_exchange("binance", timeout_s=5, api_url=server.url, health=health)
        exchange.load_markets()
        exchange.markets["NOPE/USDT"] = exchange.markets["BTC/USDT"] | {"symbol": "NOPE/USDT", "id": "NOPEUSDT"}
        exchange.markets_by_id["NOPEUSDT"] = [exchange.markets["NOPE/USDT"]]
        with pytest.raises(ccxt.BadSymbol):  # -1121 Invalid symbol: the venue refused this request
            exchange.fetch_ohlcv("NOPE/USDT", "1d", limit=5)
    snap = health.snapshot("binance")
    assert snap.errors["exchange"] == 1 and snap.error_rate == 0 and snap.score == pytest.approx(1.0)


def test_the_window_forgets_old_failures_and_reconnects() -> None:
    now = [1000.0]
    health = VenueHealth(config=HealthConfig(window_s=60, reconnects_bad=4), clock=lambda: now[0])
    health.record_call("kraken", endpoint="GET Ticker", seconds=0.1, error=ccxt.ExchangeNotAvailable("502"))
    health.record_call("kraken", endpoint="GET Ticker", seconds=0.1)
    for _ in range(2):
        health.record_reconnect("kraken")
    health.record_message("kraken")
    snap = health.snapshot("kraken")
    assert snap.factors["availability"] == 0.5 and snap.factors["stability"] == 0.5 and snap.score == 0.25
    now[0] += 120  # everything left the window; the last WebSocket data is 120 s old
    later = health.snapshot("kraken")
    assert later.calls == 0 and later.ws_reconnects == 0 and later.stale_s == 120
    assert later.factors["freshness"] == ramp(120, 60, 300) == 0.75 and later.score == 0.75
    now[0] += 300
    assert health.score("kraken") == 0.0  # 420 s without WebSocket data: stale
    assert health.score("never-seen") == 1.0


def test_skew_and_status_factors() -> None:
    health = VenueHealth()
    health.record_clock_skew("binance", -3.0)
    assert health.snapshot("binance").factors["clock"] == pytest.approx(0.5)
    health.record_status("binance", "maintenance")
    assert health.score("binance") == 0.0
    health.record_status("binance", "ok")
    health.record_clock_skew("binance", 0.2)
    assert health.score("binance") == 1.0


def test_bounds_that_cannot_rank_are_refused() -> None:
    with pytest.raises(ValueError, match="latency_bad_s=0.1 must be above latency_good_s=0.5"):
        HealthConfig(latency_bad_s=0.1)


def test_websocket_data_and_a_dropped_connection_are_recorded(btc_1d: pl.DataFrame) -> None:
    rows = [[1_700_000_040_000 + i * 60_000, 100.0, 101.0, 99.0, 100.5, 5.0] for i in range(20)]
    health = VenueHealth()
    errors: list[int] = []

    async def watch(rest: BinanceLoopback, ws: BinanceWsLoopback) -> list[int]:
        client = make_exchange("binance", timeout_s=5, api_url=rest.url, websocket=True, ws_url=ws.url, health=health)
        try:
            await client.load_markets()
            seen: list[int] = []
            while len(seen) < 6:
                try:
                    seen.append((await asyncio.wait_for(client.watch_ohlcv("BTC/USDT", "1m"), 5))[-1][0])
                except ccxt.NetworkError:  # a watch made while the server closed: a consumer watches again
                    errors.append(len(seen))
                    assert len(errors) <= 1, errors  # more would be a bug, not the race
            return seen
        finally:
            await client.close()

    with BinanceLoopback({}) as rest, BinanceWsLoopback({"BTCUSDT": rows}, drop_after=3) as ws:
        seen = asyncio.run(watch(rest, ws))
        connections = ws.connections
    snap = health.snapshot("binance")
    assert connections == 2 and seen[2] == seen[3]  # the drop: the next connection resends the candle
    assert errors in ([], [3])  # at most the one watch that met the closing connection
    assert snap.ws_reconnects == 1
    assert snap.stale_s is not None and snap.stale_s < 5 and snap.factors["stability"] == pytest.approx(0.9)


def test_metrics_are_exported_under_tradeloop_venue(btc_1d: pl.DataFrame) -> None:
    def sample(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    ok = {"venue": "binance", "endpoint": "GET klines", "outcome": "ok"}
    limited = ok | {"outcome": "rate_limit"}
    before = sample("tradeloop_venue_requests_total", **ok), sample("tradeloop_venue_requests_total", **limited)
    health = VenueHealth(export=True)
    with BinanceLoopback({("BTCUSDT", "1d"): btc_1d}, faults={2: rate_limited()}) as server:
        exchange = make_exchange("binance", timeout_s=5, api_url=server.url, health=health)
        exchange.load_markets()
        assert fetch(exchange, 3) == ["rate_limit"]
    health.record_clock_skew("binance", 0.25)
    assert sample("tradeloop_venue_requests_total", **ok) == before[0] + 2
    assert sample("tradeloop_venue_requests_total", **limited) == before[1] + 1
    assert sample("tradeloop_venue_request_duration_seconds_count", venue="binance", endpoint="GET klines") >= 3
    assert sample("tradeloop_venue_clock_skew_seconds", venue="binance") == 0.25
    assert sample("tradeloop_venue_health_score", venue="binance") == pytest.approx(health.score("binance"))
    assert 0 < health.score("binance") < 1
