"""GET /data/last through the real HTTP stack: the latest-price cache on the real Redis (what
the market-data service and the engines write) when it has the instrument, else the close of
the lake's newest candle; an instrument neither knows is a 404 naming it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.api.conftest import Api, start_api
from tests.conftest import REDIS_URL
from tradeloop.bus import price_key
from tradeloop.data import CandleLake, SeriesKey
from tradeloop.data.importer import import_sample, sample_files
from tradeloop.identity import Role


@pytest.fixture
def bus_api(tmp_path: Path, redis_prefix: str) -> Iterator[Api]:
    """The API over SQLite, with REDIS_URL (this test's own key prefix)."""
    yield from start_api(
        tmp_path, f"sqlite:///{tmp_path / 'ops.db'}", REDIS_URL=REDIS_URL, TRADELOOP_REDIS_PREFIX=redis_prefix
    )


def test_the_cache_answers_first_and_the_lake_when_the_cache_has_no_price(bus_api: Api, redis_prefix: str) -> None:
    api = bus_api
    lake = CandleLake(api.ctx.settings.lake_dir, quarantine_root=api.ctx.settings.quarantine_dir)
    import_sample(lake, files=[p for p in sample_files() if p.name.startswith("coinbase__BTC-USD")])
    api.user("vera", Role.VIEWER)
    vera = api.login("vera")
    stored = {k.timeframe: lake.read(k) for k in lake.list_series() if k.symbol == "BTC-USD"}
    finest = min(stored, key=lambda tf: SeriesKey("coinbase", "BTC-USD", tf).timeframe_ms)

    from_lake = api.client.get("/data/last", params={"exchange": "coinbase", "symbol": "BTC/USD"}, headers=vera)
    assert from_lake.status_code == 200, from_lake.text
    body = from_lake.json()
    assert body["source"] == "lake" and body["symbol"] == "BTC-USD" and body["timeframe"] == finest
    assert (body["bar_ts"], body["price"]) == (stored[finest]["ts"][-1], pytest.approx(stored[finest]["close"][-1]))

    client = redis.Redis.from_url(REDIS_URL)
    client.hset(f"{redis_prefix}:prices", price_key("coinbase", "BTC-USD"), json.dumps([64_321.5, 1_893_456_000_000]))
    cached = api.client.get("/data/last", params={"exchange": "coinbase", "symbol": "BTC-USD"}, headers=vera).json()
    assert cached == {
        "exchange": "coinbase", "symbol": "BTC-USD", "price": 64_321.5, "bar_ts": 1_893_456_000_000,
        "source": "cache", "timeframe": None,
    }  # fmt: skip

    unknown = api.client.get("/data/last", params={"exchange": "coinbase", "symbol": "DOGE-USD"}, headers=vera)
    assert unknown.status_code == 404 and "coinbase DOGE-USD" in unknown.json()["detail"]
    bad = api.client.get("/data/last", params={"exchange": "coinbase", "symbol": "BTCUSD"}, headers=vera)
    assert bad.status_code == 422
    assert api.client.get("/data/last", params={"exchange": "coinbase", "symbol": "BTC-USD"}).status_code == 401
