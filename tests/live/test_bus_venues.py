"""A session on two venues fed by the market-data service (``--feed bus``): each venue's stream
(``market:binance:1m``, ``market:okx:1m``, published on the real Redis as
``live.marketdata.service`` publishes them) is read by its own ``BusFeed`` and the two are merged
by bar time (``live.venue_feed.VenueBusFeed``): every bar is decided once, in order, with both
venues' candles under the session's keys (``BTC-USDT``, ``okx:BTC-USDT``); a venue whose stream
is late brings its candle as the next bar's backfill, never lost; and a venue's event is
acknowledged only once the engine asked for the bar after it."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncGenerator, AsyncIterator

import polars as pl
import pytest

from live.bus import RedisBus
from live.feeds.base import CandleBatch
from live.marketdata.bus_feed import BusFeed
from live.marketdata.service import batch_event
from live.runner import SessionConfig, run_session
from tests.conftest import REDIS_URL
from tests.live.conftest import make_settings, trained_world  # noqa: F401  (shared fixture)
from tests.live.test_ccxt_feed import T0, rows
from tradeloop.bus import market_stream
from tradeloop.data import CandleLake, SeriesKey
from tradeloop.ops import EquityPoint
from tradeloop.registry import ModelRegistry

STEP = 60_000
WARM = 200  # bars of history in each venue's lake series
BARS = 8
LATE = 3  # the bar OKX's stream publishes only after the merged bar went out without it
KEYS = {"binance": "BTC-USDT", "okx": "okx:BTC-USDT"}  # the session's key of each venue's BTC-USDT


def frame_of(rows_: list[list], symbol: str) -> pl.DataFrame:
    cols = ["ts", "open", "high", "low", "close", "volume"]
    return pl.DataFrame(rows_, schema=cols, orient="row").with_columns(pl.lit(symbol).alias("symbol"))


async def publish(bus: RedisBus, venue: str, row: list) -> None:
    batch = CandleBatch(ts=row[0], candles=frame_of([row], "BTC-USDT"), received_ns=0)
    await bus.publish(market_stream(venue, "1m"), batch_event(batch, venue=venue, timeframe="1m"))


async def groups(bus: RedisBus, group: str) -> None:
    for venue in KEYS:
        while not any(g["name"] == group for g in await _groups(bus, venue)):
            await asyncio.sleep(0.05)


async def _groups(bus: RedisBus, venue: str) -> list:
    try:
        return list(await bus.client.xinfo_groups(bus.key(market_stream(venue, "1m"))))
    except Exception:  # noqa: BLE001 - no stream yet
        return []


def test_a_session_on_two_venues_decides_every_bar_from_both_streams(
    trained_world, tmp_path, redis_prefix, monkeypatch: pytest.MonkeyPatch
) -> None:
    import live.runner
    import live.session_feeds

    _, champion = ModelRegistry(trained_world.settings.registry_dir).load("sma_cross")
    after = champion.trained_until + STEP - T0  # bars after its training end: the model may decide them
    script = {
        v: [[r[0] + after, *r[1:]] for r in rows(WARM + BARS, seed)] for v, seed in (("binance", 21), ("okx", 22))
    }
    root = tmp_path / "data"
    lake = CandleLake(root / "lake")
    for venue, candles in script.items():
        lake.write(SeriesKey(venue, "BTC-USDT", "1m"), frame_of(candles[:WARM], "BTC-USDT").drop("symbol"))
    shutil.copytree(trained_world.settings.registry_dir, root / "registry")
    settings = make_settings(root, REDIS_URL=REDIS_URL, TRADELOOP_REDIS_PREFIX=redis_prefix)
    config = SessionConfig(name="two-bus", exchange="binance", symbols=tuple(KEYS.values()), timeframe="1m", feed="bus")
    bars = [r[0] for r in script["binance"][WARM:]]
    monkeypatch.setattr(live.session_feeds, "BUS_SETTLE_S", 0.5)
    seen: list[CandleBatch] = []
    sent: dict[int, asyncio.Event] = {}

    def spied(settings_, config_):  # the engine's feed, each batch it is handed recorded
        feed = live.session_feeds.bus_feed(settings_, config_)
        inner = feed.batches

        async def batches(*, after_ts: int | None = None) -> AsyncIterator[CandleBatch]:
            async for batch in inner(after_ts=after_ts):
                seen.append(batch)
                sent.setdefault(batch.ts, asyncio.Event()).set()
                yield batch

        feed.batches = batches  # type: ignore[method-assign]
        return feed

    monkeypatch.setattr(live.runner, "bus_feed", spied)

    async def scenario():
        bus = RedisBus(REDIS_URL, prefix=redis_prefix)
        try:
            run = asyncio.create_task(run_session(settings, config, max_bars=BARS))
            await asyncio.wait_for(groups(bus, "engine:two-bus"), 30)
            for i in range(BARS):
                await publish(bus, "binance", script["binance"][WARM + i])
                if i == LATE:  # OKX's bar goes out only once the merged bar did, without it
                    await asyncio.wait_for(sent.setdefault(bars[i], asyncio.Event()).wait(), 30)
                await publish(bus, "okx", script["okx"][WARM + i])
            return await asyncio.wait_for(run, 60)
        finally:
            await bus.close()

    engine = asyncio.run(scenario())
    marks = engine.store.frame(EquityPoint, engine.session.id).sort("ts")
    assert marks["ts"].to_list() == bars  # every bar decided once, in order
    assert [b.ts for b in seen] == bars
    for batch in seen:
        want = ["BTC-USDT"] if batch.ts == bars[LATE] else sorted(KEYS.values())
        assert batch.candles["symbol"].to_list() == want, batch.ts
        assert set(batch.candles["ts"].to_list()) == {batch.ts}  # never a candle of another bar
        late = batch.backfill
        if batch.ts == bars[LATE + 1]:  # OKX's late candle: the next bar's backfill, under its key
            assert late is not None and late.select("symbol", "ts").rows() == [("okx:BTC-USDT", bars[LATE])]
            assert late["close"].to_list() == [script["okx"][WARM + LATE][4]]
        else:
            assert late is None, batch.ts
    for venue, key in KEYS.items():  # warm-up from each venue's lake series, then every live bar: no hole
        window = engine.window.filter(pl.col("symbol") == key).sort("ts")
        assert window["ts"].to_list()[-(WARM + BARS) :] == [r[0] for r in script[venue]], key
        assert window["close"].to_list()[-(WARM + BARS) :] == [r[4] for r in script[venue]], key


def test_a_venues_event_is_acknowledged_only_once_the_engine_asks_for_the_next_bar(tmp_path, redis_prefix) -> None:
    """A crash before the bar is committed must see it again: neither venue's event of a bar the
    merged feed handed out is acknowledged (nor the next one read) until the next bar is asked for."""
    from live.venue_feed import VenueBusFeed

    script = {v: rows(3, seed) for v, seed in (("binance", 31), ("okx", 32))}

    async def scenario() -> list[tuple[int, dict[str, int], list[str]]]:
        bus = RedisBus(REDIS_URL, prefix=redis_prefix)
        feeds = {
            venue: BusFeed(
                RedisBus(REDIS_URL, prefix=redis_prefix),
                lake=CandleLake(tmp_path),
                venue=venue,
                symbols=["BTC-USDT"],
                timeframe="1m",
                session="held",
                block_ms=50,
            )
            for venue in KEYS
        }
        feed = VenueBusFeed(feeds, exchange="binance", symbols=list(KEYS.values()), settle_s=5.0)
        stream = feed.batches(after_ts=None)
        assert isinstance(stream, AsyncGenerator)

        async def take() -> CandleBatch:
            return await anext(stream)

        first = asyncio.create_task(take())
        try:
            await asyncio.wait_for(groups(bus, "engine:held"), 10)
            for i in range(3):
                for venue in KEYS:
                    await publish(bus, venue, script[venue][i])
            out = []
            for i in range(3):
                batch = await asyncio.wait_for(first if i == 0 else anext(stream), 10)
                await asyncio.sleep(0.3)  # a pump reading ahead would have acknowledged this bar by now
                pending = {}
                for venue in KEYS:
                    info = await bus.client.xpending(bus.key(market_stream(venue, "1m")), "engine:held")
                    pending[venue] = info["pending"]
                out.append((batch.ts, pending, sorted(batch.candles["symbol"].to_list())))
            return out
        finally:
            await stream.aclose()
            await feed.close()
            await bus.close()

    out = asyncio.run(scenario())
    # each bar's two events are still pending while the engine works on it; the bar before was acknowledged
    assert out == [(script["binance"][i][0], {"binance": 1, "okx": 1}, sorted(KEYS.values())) for i in range(3)]
