"""The arbitrage service over recorded and crafted quotes: each opportunity's events stored in
the real operational database (SQLite, PostgreSQL) and published on the real Redis bus (and
the in-process one), in order; a repeated event changes nothing; a recorded ccxt order book
gives its top of book."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from pathlib import Path

import pytest

from live.arbitrage import STREAM, ArbitrageService, book_top, replay_tops
from live.bus import InProcessBus, RedisBus
from tests.arbitrage.test_scanner import FIXTURES, recorded, top
from tests.conftest import REDIS_URL
from tradeloop.arbitrage import ArbitrageConfig, ArbitrageScanner
from tradeloop.ops import OpsStore
from tradeloop.ops.market_store import MarketStore
from tradeloop.ops.session_reads import Page


@pytest.fixture(params=["sqlite", "postgresql"])
def market(request, tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'ops.db'}" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    store = OpsStore.open(url)
    yield MarketStore(store)
    store.close()


def test_events_are_stored_then_published_and_listed(market: MarketStore, redis_prefix: str) -> None:
    binance, kraken = recorded()
    fees = {"binance": 0.0, "kraken": 0.0, "a": 0.001, "b": 0.001}
    quotes = [binance, kraken]  # the recorded pair: opens (no fees)
    eth = [top("a", 0, bid=99, ask=100), top("b", 500, bid=100.5, ask=100.6), top("b", 2_000, bid=100.0, ask=100.1)]
    quotes += [replace(q, symbol="ETH/USDT") for q in eth]

    async def run() -> list[tuple[str, dict]]:
        bus = RedisBus(REDIS_URL, prefix=redis_prefix)
        try:
            service = ArbitrageService(ArbitrageScanner(ArbitrageConfig(taker_fees=fees)), bus=bus, market=market)
            assert await service.run(replay_tops(quotes)) == 3
            return await bus.read(STREAM, group="test", consumer="t")
        finally:
            await bus.close()

    published = asyncio.run(run())
    assert [e["kind"] for _, e in published] == ["opened", "opened", "closed"]
    rows = market.opportunities(Page(limit=10))
    rows = [r for r in rows if r.symbol in ("BTC/USDT", "ETH/USDT")]
    assert [(r.symbol, r.buy_venue, r.sell_venue) for r in rows] == [
        ("BTC/USDT", "binance", "kraken"),
        ("ETH/USDT", "a", "b"),
    ]
    assert [e["id"] for _, e in published] == [rows[0].id, rows[1].id, rows[1].id]
    assert rows[0].end_ms is None and rows[0].size == pytest.approx(0.03321)
    assert (rows[1].start_ms, rows[1].end_ms) == (500, 2_000) and published[2][1]["duration_ms"] == 1_500
    assert [r.id for r in market.opportunities(Page(limit=10), symbol="BTC/USDT", open_only=True)] == [rows[0].id]
    assert [r.id for r in market.opportunities(Page(limit=10), symbol="ETH/USDT", venue="a")] == [rows[1].id]
    assert [r.id for r in market.opportunities(Page(limit=10), venue="kraken")] == [rows[0].id]
    assert [r.id for r in market.opportunities(Page(limit=1, after=rows[0].id))] == [rows[1].id]


def test_a_repeated_event_changes_nothing(market: MarketStore) -> None:
    scanner = ArbitrageScanner(ArbitrageConfig(taker_fees={"a": 0.0, "b": 0.0}))
    scanner.update(top("a", 0, bid=99, ask=100, symbol="SOL/USDT"))
    (opened,) = scanner.update(top("b", 0, bid=101, ask=102, symbol="SOL/USDT"))
    (closed,) = scanner.update(top("b", 700, bid=99, ask=100, symbol="SOL/USDT"))
    first = market.record(opened)
    assert market.record(closed) == first == market.record(opened)  # a late repeat of the opening
    (row,) = market.opportunities(Page(), symbol="SOL/USDT")
    assert row.end_ms == 700 and row.net_bps == pytest.approx(100.0)


def test_a_recorded_ccxt_order_book_gives_its_top() -> None:
    book = json.loads((FIXTURES / "btc_usdt_tickers.json").read_text())["order_books"]["binance"]["parsedResponse"]
    assert book_top("binance", book) is None  # this capture has no time
    got = book_top("binance", book, ts=1)
    assert got is not None and (got.bid, got.bid_size, got.ask, got.ask_size) == (42574.3, 0.0107, 42574.31, 0.0087)
    assert book_top("binance", {"symbol": "BTC/USDT", "bids": [], "asks": [[1, 1]], "timestamp": 1}) is None


def test_the_in_process_bus_gets_the_same_events() -> None:
    async def run() -> list[str]:
        bus = InProcessBus()
        service = ArbitrageService(ArbitrageScanner(ArbitrageConfig(taker_fees={"a": 0, "b": 0})), bus=bus, market=None)
        await service.run(replay_tops([top("a", 0, bid=99, ask=100), top("b", 0, bid=101, ask=102)]))
        return [e["kind"] for _, e in await bus.read(STREAM, group="g", consumer="c")]

    assert asyncio.run(run()) == ["opened"]
