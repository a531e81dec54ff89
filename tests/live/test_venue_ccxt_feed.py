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


def rows(ts: int, *candles: tuple[str, int, float]) -> pl.DataFrame:
    return pl.DataFrame(
        {"symbol": [c[0] for c in candles], "ts": [c[1] for c in candles], "open": [c[2] for c in candles],
         "high": [c[2] for c in candles], "low": [c[2] for c in candles], "close": [c[2] for c in candles],
         "volume": [1.0] * len(candles)}
    )  # fmt: skip


def test_a_venues_backfill_ahead_of_the_merged_bar_waits_for_its_own_bar() -> None:
    """OKX runs ahead (Binance's bar 1 never comes, so every merged bar waits ``settle_s``): its
    bar 3 carries Y's bar 2 as backfill before the merged bar 1 went out. Bar 1 gets no candle
    of a later bar; Y's bar 2 is decided with the merged bar 2, never sent as backfill ahead of it."""
    from live.feeds.base import roll_window

    async def scenario() -> list[CandleBatch]:
        never = asyncio.Event()
        binance = Scripted(["A"], [(CandleBatch(ts=STEP, candles=rows(STEP, ("A", STEP, 1.0)), received_ns=0), never)])
        okx = Scripted(
            ["X", "Y"],
            [(CandleBatch(ts=STEP, candles=rows(STEP, ("X", STEP, 10.0), ("Y", STEP, 20.0)), received_ns=0), None),
             (CandleBatch(ts=2 * STEP, candles=rows(2 * STEP, ("X", 2 * STEP, 11.0)), received_ns=0), None),
             (CandleBatch(ts=3 * STEP, candles=rows(3 * STEP, ("X", 3 * STEP, 12.0), ("Y", 3 * STEP, 22.0)),
                          received_ns=0, backfill=rows(0, ("Y", 2 * STEP, 21.0))), None)],
        )  # fmt: skip
        feed = VenueCcxtFeed(
            {"binance": binance, "okx": okx},  # type: ignore[dict-item]
            exchange="binance",
            symbols=["A", "okx:X", "okx:Y"],
            settle_s=0.2,
        )
        out: list[CandleBatch] = []
        async for merged in feed.batches(after_ts=0):
            out.append(merged)
            if len(out) == 3:
                break
        return out

    out = asyncio.run(asyncio.wait_for(scenario(), 10))
    assert [b.ts for b in out] == [STEP, 2 * STEP, 3 * STEP]
    for merged in out:  # a bar's candles are its own; its backfill is of bars before it
        assert set(merged.candles["ts"]) == {merged.ts}
        assert merged.backfill is None or (merged.backfill["ts"] < merged.ts).all()
    assert out[0].backfill is None
    assert out[1].candles.select("symbol", "close").rows() == [("okx:X", 11.0), ("okx:Y", 21.0)]  # decided
    assert out[2].candles.select("symbol", "close").rows() == [("okx:X", 12.0), ("okx:Y", 22.0)]
    window = pl.DataFrame(schema=rows(0).schema)
    for merged in out:
        window, _ = roll_window(window, merged, bars=10)
    assert window.filter(pl.col("symbol") == "okx:Y")["ts"].to_list() == [STEP, 2 * STEP, 3 * STEP]


def test_the_window_keeps_each_symbols_rows_in_time_order_whatever_arrives() -> None:
    """A backfilled candle older than the window's newest, and a bar that comes twice."""
    from live.feeds.base import roll_window

    window = rows(0, ("X", STEP, 1.0), ("Y", STEP, 2.0), ("X", 3 * STEP, 3.0))
    late = CandleBatch(ts=4 * STEP, candles=rows(0, ("X", 4 * STEP, 4.0), ("Y", 4 * STEP, 5.0)), received_ns=0,
                       backfill=rows(0, ("X", 2 * STEP, 6.0)))  # fmt: skip
    rolled, gained = roll_window(window, late, bars=10)
    assert gained == {"X": 1}
    assert rolled.filter(pl.col("symbol") == "X")["ts"].to_list() == [STEP, 2 * STEP, 3 * STEP, 4 * STEP]
    again = CandleBatch(ts=4 * STEP, candles=rows(0, ("Y", 4 * STEP, 7.0)), received_ns=0)
    rolled, _ = roll_window(rolled, again, bars=10)
    y = rolled.filter(pl.col("symbol") == "Y")
    assert y.select("ts", "close").rows() == [(STEP, 2.0), (4 * STEP, 7.0)]  # once, the later row
    in_order = rows(0, ("X", STEP, 1.0), ("Y", STEP, 2.0))
    kept, _ = roll_window(
        in_order, CandleBatch(ts=2 * STEP, candles=rows(0, ("Y", 2 * STEP, 3.0)), received_ns=0), bars=10
    )
    assert kept.select("symbol", "ts").rows() == [("X", STEP), ("Y", STEP), ("Y", 2 * STEP)]  # untouched order
