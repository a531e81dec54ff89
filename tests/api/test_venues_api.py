"""Venue health and arbitrage opportunities through the real HTTP stack over PostgreSQL (with
row-level security: any viewer reads these market-wide rows) and SQLite: what the live side
wrote to the database, paged like the other lists; anonymous callers are refused."""

from __future__ import annotations

import pytest

from tests.api.conftest import Api
from tests.arbitrage.test_scanner import top
from tradeloop.arbitrage import ArbitrageConfig, ArbitrageScanner
from tradeloop.identity import Role
from tradeloop.observability.venues import VenueHealth
from tradeloop.ops.market_store import MarketStore


def written(api: Api) -> list[int]:
    """Two venues' snapshots (one in maintenance) and three opportunities (one still open)."""
    health = VenueHealth(clock=lambda: api.ctx.now().timestamp() - 30)  # taken 30 s ago
    health.record_call("binance", endpoint="GET klines", seconds=0.05)
    health.record_status("kraken", "maintenance")
    market = MarketStore(api.ctx.store)
    assert market.save_health(health.snapshots()) == 2
    scanner = ArbitrageScanner(ArbitrageConfig(taker_fees={"a": 0.0, "b": 0.0}))
    ids = []
    for symbol in ("BTC/USDT", "ETH/USDT", "SOL/USDT"):
        scanner.update(top("a", 1_000, bid=99, ask=100, symbol=symbol))
        (opened,) = scanner.update(top("b", 1_000, bid=101, ask=102, symbol=symbol))
        ids.append(market.record(opened))
    (closed,) = scanner.update(top("b", 4_000, bid=99, ask=100, symbol="ETH/USDT"))
    market.record(closed)
    return ids


@pytest.mark.parametrize("which", ["api", "sqlite_api"])
def test_health_and_opportunities_are_listed(which: str, request) -> None:
    api: Api = request.getfixturevalue(which)
    ids = written(api)
    api.user("vera", Role.VIEWER)
    viewer = api.login("vera")
    assert api.client.get("/venues/health").status_code == 401
    assert api.client.get("/arbitrage/opportunities").status_code == 401
    answer = api.client.get("/venues/health", headers=viewer)
    assert answer.status_code == 200, answer.text
    binance, kraken = answer.json()
    assert (binance["venue"], binance["score"], binance["status"]) == ("binance", 1.0, None)
    assert binance["figures"]["calls"] == 1 and binance["figures"]["p95_s"] == 0.05
    assert (kraken["venue"], kraken["score"], kraken["status"]) == ("kraken", 0.0, "maintenance")
    assert 29 <= kraken["age_s"] <= 60
    first = api.client.get("/arbitrage/opportunities", params={"limit": 2}, headers=viewer).json()
    assert [o["id"] for o in first["items"]] == ids[:2] and first["next_after"] == ids[1]
    rest = api.client.get(
        "/arbitrage/opportunities", params={"limit": 2, "after_id": first["next_after"]}, headers=viewer
    ).json()
    assert [o["id"] for o in rest["items"]] == ids[2:] and rest["next_after"] is None
    eth = first["items"][1]
    assert (eth["symbol"], eth["buy_venue"], eth["sell_venue"], eth["start_ms"], eth["end_ms"]) == (
        "ETH/USDT", "a", "b", 1_000, 4_000,
    )  # fmt: skip
    assert eth["net_bps"] == 100.0 and eth["size"] == 1.0
    still = api.client.get("/arbitrage/opportunities", params={"open_only": True}, headers=viewer).json()
    assert [o["symbol"] for o in still["items"]] == ["BTC/USDT", "SOL/USDT"]
    bad = api.client.get("/arbitrage/opportunities", params={"limit": 0}, headers=viewer)
    assert bad.status_code == 422 and "limit" in bad.text
