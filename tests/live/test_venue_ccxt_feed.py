"""The live feed of a session on several venues (``live.venue_feed.VenueCcxtFeed``) merges each
venue's batches by bar time: a bar waits for every venue, a late venue holds it back at most
``settle_s``, and the late venue's candle of it comes with the next bar as backfill, named by the
session's key. Each venue's feed is a stand-in that yields what the test lets it."""

from __future__ import annotations

import asyncio

import polars as pl
import pytest

from live.feeds.base import CandleBatch
from live.venue_feed import VenueCcxtFeed

STEP = 60_000


def batch(symbol: str, ts: int, close: float) -> CandleBatch:
    frame = pl.DataFrame(
        {"symbol": [symbol], "ts": [ts], "open": [close], "high": [close], "low": [close], "close": [close],
         "volume": [1.0]}
    )  # fmt: skip
    return CandleBatch(ts=ts, candles=frame, received_ns=0)


class Scripted:
    """One venue's feed: its batches, each released by its gate (None: at once)."""

    def __init__(self, symbols: list[str], script: list[tuple[CandleBatch, asyncio.Event | None]]):
        self.symbols, self.script, self.on_stale, self.asked_after = symbols, script, None, []

    async def batches(self, *, after_ts: int | None = None):
        self.asked_after.append(after_ts)
        for item, gate in self.script:
            if gate is not None:
                await gate.wait()
            yield item
        await asyncio.Event().wait()  # a live feed never ends

    def history(self, *, before_ts: int, bars: int) -> pl.DataFrame:
        return pl.concat([b.candles for b, _ in self.script]).filter(pl.col("ts") < before_ts)

    async def close(self) -> None:
        pass


def test_bars_merge_across_venues_and_a_late_venues_candle_comes_as_backfill() -> None:
    async def scenario() -> tuple[list[CandleBatch], Scripted]:
        late = asyncio.Event()
        binance = Scripted(  # its bar 3 comes once OKX's late bar 2 does: a bar's settle time runs from then
            ["BTC-BUSD"], [(batch("BTC-BUSD", t * STEP, 100 + t), late if t == 3 else None) for t in (1, 2, 3)]
        )
        okx = Scripted(
            ["BTC-USDT"],
            [(batch("BTC-USDT", STEP, 201), None), (batch("BTC-USDT", 2 * STEP, 202), late),
             (batch("BTC-USDT", 3 * STEP, 203), None)],
        )  # fmt: skip
        feed = VenueCcxtFeed(
            {"binance": binance, "okx": okx},  # type: ignore[dict-item]
            exchange="binance",
            symbols=["BTC-BUSD", "okx:BTC-USDT"],
            settle_s=0.2,
        )
        stale: list[tuple[str, float]] = []
        feed.on_stale = lambda symbol, age: stale.append((symbol, age))
        okx.on_stale("BTC-USDT", 9.0)  # type: ignore[misc]  # the venue's feed reports its own symbol
        assert stale == [("okx:BTC-USDT", 9.0)]
        out: list[CandleBatch] = []
        async for merged in feed.batches(after_ts=0):
            out.append(merged)
            if merged.ts == 2 * STEP:
                late.set()  # OKX's bar 2 arrives only after the merged bar 2 went out without it
            if len(out) == 3:
                break
        await feed.close()
        return out, okx

    out, okx = asyncio.run(asyncio.wait_for(scenario(), 10))
    assert okx.asked_after == [0]
    assert [b.ts for b in out] == [STEP, 2 * STEP, 3 * STEP]
    assert [b.candles["symbol"].to_list() for b in out] == [
        ["BTC-BUSD", "okx:BTC-USDT"],
        ["BTC-BUSD"],  # OKX was late: the bar went out after settle_s
        ["BTC-BUSD", "okx:BTC-USDT"],
    ]
    assert out[2].candles["close"].to_list() == pytest.approx([103, 203])
    assert out[0].backfill is None and out[1].backfill is None
    assert out[2].backfill is not None
    assert out[2].backfill.select("symbol", "ts", "close").rows() == [("okx:BTC-USDT", 2 * STEP, 202.0)]


def test_history_names_each_venues_candles_by_the_session_key() -> None:
    binance = Scripted(["BTC-BUSD"], [(batch("BTC-BUSD", t * STEP, 100 + t), None) for t in (1, 2)])
    okx = Scripted(["BTC-USDT"], [(batch("BTC-USDT", t * STEP, 200 + t), None) for t in (1, 2)])
    feed = VenueCcxtFeed(
        {"binance": binance, "okx": okx},  # type: ignore[dict-item]
        exchange="binance",
        symbols=["BTC-BUSD", "okx:BTC-USDT"],
        settle_s=1.0,
    )
    history = feed.history(before_ts=2 * STEP, bars=10)
    assert history.select("symbol", "ts").rows() == [("BTC-BUSD", STEP), ("okx:BTC-USDT", STEP)]
