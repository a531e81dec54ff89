"""A replay following the lake while candles arrive one series at a time (an ingest, the live
feed's lake writer): the newest bar waits one pass for a symbol still being written, and a
candle stored after its bar went out reaches the engine as the next batch's backfill, so no
symbol's bar is lost between two writes."""

from __future__ import annotations

import asyncio

import polars as pl

from live.feeds.replay import ReplayFeed
from tradeloop.data import CandleLake, SeriesKey

STEP = 60_000
T0 = 1_700_000_040_000 - 1_700_000_040_000 % STEP


def candles(bars: range, base: float) -> pl.DataFrame:
    return pl.DataFrame(
        {"ts": [T0 + i * STEP for i in bars], "open": [base + i for i in bars], "high": [base + i + 1 for i in bars],
         "low": [base + i - 1 for i in bars], "close": [base + i for i in bars], "volume": 1.0}
    )  # fmt: skip


def test_a_bar_written_one_series_at_a_time_goes_out_whole_or_its_late_part_as_backfill(tmp_path) -> None:
    lake = CandleLake(tmp_path)
    btc, eth = SeriesKey("binance", "BTC-USDT", "1m"), SeriesKey("binance", "ETH-USDT", "1m")
    lake.write(btc, candles(range(3), 100.0))
    lake.write(eth, candles(range(3), 200.0))
    feed = ReplayFeed(lake, exchange="binance", symbols=["BTC-USDT", "ETH-USDT"], timeframe="1m", follow_s=0.05)

    async def scenario() -> list:
        got = []
        batches = feed.batches()
        for _ in range(3):  # the stored bars 0, 1, 2
            got.append(await anext(batches))
        nxt = asyncio.ensure_future(anext(batches))
        lake.write(btc, candles(range(3, 4), 100.0))  # bar 3: BTC first ...
        await asyncio.sleep(0.03)  # ... ETH within the pass that holds bar 3
        lake.write(eth, candles(range(3, 4), 200.0))
        got.append(await asyncio.wait_for(nxt, 5))
        nxt = asyncio.ensure_future(anext(batches))
        lake.write(btc, candles(range(4, 5), 100.0))  # bar 4: ETH comes two passes late
        got.append(await asyncio.wait_for(nxt, 5))
        await asyncio.sleep(0.2)
        lake.write(eth, candles(range(4, 5), 200.0))
        lake.write(btc, candles(range(5, 6), 100.0))
        lake.write(eth, candles(range(5, 6), 200.0))
        got.append(await asyncio.wait_for(anext(batches), 5))
        await batches.aclose()
        return got

    got = asyncio.run(scenario())
    assert [(b.ts - T0) // STEP for b in got] == [0, 1, 2, 3, 4, 5]
    assert got[3].candles["symbol"].to_list() == ["BTC-USDT", "ETH-USDT"]  # bar 3 waited for ETH
    assert got[4].candles["symbol"].to_list() == ["BTC-USDT"]  # bar 4 could not wait for ever
    late = got[5].backfill
    assert late is not None and late.select("symbol", "ts").rows() == [("ETH-USDT", T0 + 4 * STEP)]
    assert got[5].candles["symbol"].to_list() == ["BTC-USDT", "ETH-USDT"]
    assert all(b.backfill is None for b in got[:5])


def test_a_future_dated_row_does_not_turn_the_hold_off(tmp_path) -> None:
    """A lone candle stored days ahead (held back as future-dated) is not "the newest bar": the
    real newest bar still waits for the symbol being written (found by a hostile review)."""

    def first_pass(folder: str, *, future: bool) -> list[int]:
        lake = CandleLake(tmp_path / folder)
        a = candles(range(6), 100.0)
        if future:
            a = pl.concat([a, candles(range(100_000, 100_001), 100.0)])
        lake.write(SeriesKey("binance", "A-USDT", "1m"), a)
        lake.write(SeriesKey("binance", "B-USDT", "1m"), candles(range(5), 200.0))  # B's bar 5 under way
        feed = ReplayFeed(lake, exchange="binance", symbols=["A-USDT", "B-USDT"], timeframe="1m", follow_s=5.0)

        async def run() -> list[int]:
            out: list[int] = []
            batches = feed.batches()
            try:
                while True:
                    out.append((await asyncio.wait_for(anext(batches), 0.5)).ts)
            except TimeoutError:
                return [(t - T0) // STEP for t in out]
            finally:
                await batches.aclose()

        return asyncio.run(run())

    assert first_pass("plain", future=False) == [0, 1, 2, 3, 4]  # bar 5 held: B's write is under way
    assert first_pass("future", future=True) == [0, 1, 2, 3, 4]
