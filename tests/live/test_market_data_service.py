"""The market-data service as its own process (`tradeloop market-data run`) owns the venue's
connections (the real ccxt.pro against the loopback Binance WebSocket and REST servers) and
publishes closed candles on the real Redis; two engines (`--feed bus`) trade different symbols
of the venue from it, each seeing every bar once, across a restart of one of them, and the
latest-price cache holds each instrument's last close."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest
import redis
from exchange_server import BinanceLoopback
from ws_exchange_server import BinanceWsLoopback

from live.runner import SessionConfig, run_session
from tests.conftest import REDIS_URL
from tests.live.conftest import make_settings, trained_world  # noqa: F401  (shared fixture)
from tests.live.test_ccxt_feed import T0, rows
from tests.live.test_feed_gaps import serve_rest
from tradeloop.bus import market_stream, price_key
from tradeloop.data import CandleLake, SeriesKey
from tradeloop.ops import EquityPoint
from tradeloop.registry import ModelRegistry

ROOT = Path(__file__).resolve().parents[2]
STEP = 60_000
WARM = 200  # bars of history in the lake before the live ones


def service(settings_env: dict[str, str], *symbols: str) -> subprocess.Popen:
    args = ["market-data", "run", "--exchange", "binance", "--timeframe", "1m"]
    for symbol in symbols:
        args += ["--symbol", symbol]
    return subprocess.Popen(
        [sys.executable, "-m", "tradeloop", *args],
        env={**os.environ, **settings_env},
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def groups_exist(client: redis.Redis, stream: str, names: set[str], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            found = {g["name"].decode() for g in client.xinfo_groups(stream)}
        except redis.ResponseError:
            found = set()
        if names <= found:
            return
        time.sleep(0.05)
    raise AssertionError(f"consumer groups {names} were not made on {stream}")


def test_two_engines_trade_every_bar_from_one_market_data_process(trained_world, tmp_path, redis_prefix) -> None:
    _, champion = ModelRegistry(trained_world.settings.registry_dir).load("sma_cross")
    after = champion.trained_until + STEP - T0  # bars after its training end: the model may decide them
    script = {p: [[r[0] + after, *r[1:]] for r in rows(260, seed)] for p, seed in (("BTCUSDT", 11), ("ETHUSDT", 12))}
    root = tmp_path / "data"
    lake = CandleLake(root / "lake")
    for pair, symbol in (("BTCUSDT", "BTC-USDT"), ("ETHUSDT", "ETH-USDT")):
        history = pl.DataFrame(
            script[pair][:WARM], schema=["ts", "open", "high", "low", "close", "volume"], orient="row"
        )
        lake.write(SeriesKey("binance", symbol, "1m"), history)
    shutil.copytree(trained_world.settings.registry_dir, root / "registry")
    bars = [r[0] for r in script["BTCUSDT"][WARM : WARM + 30]]
    client = redis.Redis.from_url(REDIS_URL)
    stream = f"{redis_prefix}:{market_stream('binance', '1m')}"
    live = {p: c[WARM:] for p, c in script.items()}
    with BinanceLoopback(candles={}) as rest, BinanceWsLoopback(live, pace_s=0.03) as ws:
        serve_rest(rest, script)
        env = {
            "TRADELOOP_DATA_DIR": str(root),
            "REDIS_URL": REDIS_URL,
            "TRADELOOP_REDIS_PREFIX": redis_prefix,
            "TRADELOOP_EXCHANGE_API_URL": rest.url,
            "TRADELOOP_EXCHANGE_WS_URL": ws.url,
        }
        settings = make_settings(root, REDIS_URL=REDIS_URL, TRADELOOP_REDIS_PREFIX=redis_prefix)

        def config(name: str, symbol: str) -> SessionConfig:
            return SessionConfig(name=name, exchange="binance", symbols=(symbol,), timeframe="1m", feed="bus")

        async def engines(first: int) -> tuple:
            runs = [
                asyncio.create_task(run_session(settings, config("btc", "BTC-USDT"), max_bars=first)),
                asyncio.create_task(run_session(settings, config("eth", "ETH-USDT"), max_bars=30)),
            ]
            await asyncio.to_thread(groups_exist, client, stream, {"engine:btc", "engine:eth"})
            proc = service(env, "BTC-USDT", "ETH-USDT")  # the engines listen before the first bar is out
            try:
                return await asyncio.wait_for(asyncio.gather(*runs), 90), proc
            except BaseException:
                proc.kill()
                raise

        (btc, eth), proc = asyncio.run(engines(12))
        # the btc engine stops after 12 bars and comes back while the service goes on publishing
        btc = asyncio.run(asyncio.wait_for(run_session(settings, config("btc", "BTC-USDT"), max_bars=18), 60))
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    for engine in (btc, eth):
        marks = engine.store.frame(EquityPoint, engine.session.id).sort("ts")
        assert marks["ts"].to_list() == bars, engine.session.name  # every bar once, across btc's restart
        symbol = engine.session.symbols[0]
        window = engine.window.filter(pl.col("symbol") == symbol)["ts"].to_list()
        assert window == [r[0] for r in script[symbol.replace("-", "")][: WARM + 30]]  # no hole
    cached = client.hget(f"{redis_prefix}:prices", price_key("binance", "BTC-USDT"))
    assert cached is not None
    price, ts = json.loads(cached)
    last = {r[0]: r[4] for r in script["BTCUSDT"]}
    assert ts >= bars[-1] and price == pytest.approx(last[ts])
    assert "bar(s) published" in out
    from tradeloop.ops import OpsStore
    from tradeloop.ops.market_store import MarketStore

    health = {row.venue: row for row in MarketStore(OpsStore.open(settings.effective_database_url)).health()}
    assert 0.5 < health["binance"].score <= 1.0  # the service's venue monitor snapshots its venue's health


def test_an_engine_whose_pending_event_was_trimmed_starts_again(tmp_path, redis_prefix) -> None:
    """The engine stopped before committing a bar; the event was trimmed from the stream while it
    was down (MAXLEN): on restart the gone entry is skipped, not a crash on every start (found by
    a hostile review)."""
    from live.bus import RedisBus
    from live.marketdata.bus_feed import BusFeed

    def event(ts: int) -> dict:
        return {"venue": "binance", "timeframe": "1m", "ts": ts, "candles": [["BTC-USDT", ts, 1, 1, 1, 1, 1]]}

    async def scenario() -> int:
        bus = RedisBus(REDIS_URL, prefix=redis_prefix)
        feed = BusFeed(bus, lake=CandleLake(tmp_path), venue="binance", symbols=["BTC-USDT"], timeframe="1m",
                       session="s1", block_ms=50)  # fmt: skip
        stream = market_stream("binance", "1m")
        batches = feed.batches()
        first = asyncio.ensure_future(anext(batches))
        await asyncio.sleep(0.3)  # the group exists
        gone = await bus.publish(stream, event(T0))
        assert (await asyncio.wait_for(first, 5)).ts == T0
        await batches.aclose()  # stopped before the bar committed: the entry stays pending
        await bus.client.xdel(bus.key(stream), gone)
        await bus.publish(stream, event(T0 + STEP))
        batches = feed.batches()
        try:
            return (await asyncio.wait_for(anext(batches), 5)).ts
        finally:
            await batches.aclose()
            await bus.close()

    assert asyncio.run(scenario()) == T0 + STEP


def test_the_first_batchs_backfill_reads_the_stream_back_only_as_far_as_it_needs(tmp_path, redis_prefix) -> None:
    """The lake's last candle is 300 bars before the first event the engine reads: the backfill
    holds the last ``max_backfill_bars`` bars before it, and the stream is read back only to
    the entry of the oldest of them (ids are the events' publication times, after each bar's
    close), not to its start."""
    from live.bus import RedisBus
    from live.marketdata.bus_feed import BusFeed
    from tradeloop.bus import encode

    def event(ts: int) -> dict:
        return {"venue": "binance", "timeframe": "1m", "ts": ts, "candles": [["BTC-USDT", ts, 1, 1, 1, 1, 1]]}

    lake = CandleLake(tmp_path)
    lake.write(SeriesKey("binance", "BTC-USDT", "1m"), pl.DataFrame(
        [[T0, 1.0, 1.0, 1.0, 1.0, 1.0]], schema=["ts", "open", "high", "low", "close", "volume"], orient="row"
    ))  # fmt: skip

    async def scenario() -> tuple[list[int], int]:
        bus = RedisBus(REDIS_URL, prefix=redis_prefix)
        key = bus.key(market_stream("binance", "1m"))
        for i in range(1, 301):  # published before the engine came: each a moment after its bar closed
            await bus.client.xadd(key, encode(event(T0 + i * STEP)), id=f"{T0 + (i + 1) * STEP + 5}-0")
        feed = BusFeed(bus, lake=lake, venue="binance", symbols=["BTC-USDT"], timeframe="1m", session="s2",
                       block_ms=50, max_backfill_bars=50)  # fmt: skip
        read, real = [0], bus.client.xrevrange

        async def counted(*args, **options):  # the real XREVRANGE, its entries counted
            page = await real(*args, **options)
            read[0] += len(page)
            return page

        bus.client.xrevrange = counted
        batches = feed.batches()
        first = asyncio.ensure_future(anext(batches))
        async with asyncio.timeout(10):
            while not await bus.client.xinfo_groups(key):
                await asyncio.sleep(0.02)
        await bus.client.xadd(key, encode(event(T0 + 301 * STEP)), id=f"{T0 + 302 * STEP + 5}-0")
        try:
            batch = await asyncio.wait_for(first, 10)
        finally:
            await batches.aclose()
            await bus.close()
        assert batch.ts == T0 + 301 * STEP and batch.backfill is not None
        return batch.backfill["ts"].to_list(), read[0]

    backfill, read = asyncio.run(scenario())
    assert backfill == [T0 + i * STEP for i in range(251, 301)]
    assert read <= 52  # the 50 wanted, and the one bar of slack: not the stream's 300
