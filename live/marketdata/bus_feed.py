"""An engine's feed from the market-data service (``--feed bus``): the closed candles it
publishes on the bus, read through the engine's own consumer group.

Rules:

1. A session reads the stream ``market:<venue>:<timeframe>`` in the consumer group
   ``engine:<session>``, made at the stream's end the first time (a new session does not
   replay the stream's past as live bars). An event is acknowledged once the engine asks for
   the next one (its bar is committed); after a crash the unacknowledged ones come again,
   and those at or before the session's last committed bar are skipped.
2. Only the session's symbols are taken from each event (the service publishes every symbol
   of the venue); an event with none of them is acknowledged and skipped.
3. The warm-up comes from the lake (the service keeps live candles there, a minute behind at
   most); the bars between the lake's last candle and the first event come from the stream's
   earlier events, as the first batch's backfill, so the first decision's window has no hole.
   At most ``max_backfill_bars`` bars before the first event are wanted, and the stream is read
   back in pages only as far as the entry id of the oldest wanted bar's close (an event is
   published after its bar closed; one bar of slack for the clocks): never the whole stream.
4. No event for ``stale_after_s``: every symbol is reported stale (the service is down or cut
   off), once, until events come again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import polars as pl

from live.bus import RedisBus
from live.feeds.base import CandleBatch, lake_candles, last_bars
from tradeloop.bus import decode, market_stream
from tradeloop.data import CandleLake, SeriesKey
from tradeloop.data.schema import CANDLE_COLUMNS, timeframe_ms

log = logging.getLogger(__name__)
COLUMNS = ("symbol", *CANDLE_COLUMNS)


class BusFeed:
    name = "bus"

    def __init__(
        self,
        bus: RedisBus,
        *,
        lake: CandleLake,
        venue: str,
        symbols: list[str],
        timeframe: str,
        session: str,
        stale_after_s: float = 180.0,
        block_ms: int = 500,
        max_backfill_bars: int = 1000,
        on_stale: Callable[[str, float], None] | None = None,
    ):
        self.max_backfill_bars = max_backfill_bars
        self.bus, self.lake, self.venue, self.timeframe = bus, lake, venue, timeframe
        self.symbols, self.stale_after_s, self.block_ms = list(symbols), stale_after_s, block_ms
        self.on_stale = on_stale
        self.stream, self.group = market_stream(venue, timeframe), f"engine:{session}"
        self.step = timeframe_ms(timeframe)
        self.stale = False

    def history(self, *, before_ts: int, bars: int) -> pl.DataFrame:
        frame = lake_candles(self.lake, [SeriesKey(self.venue, s, self.timeframe) for s in self.symbols])
        return last_bars(frame.filter(pl.col("ts") < before_ts), bars)

    async def batches(self, *, after_ts: int | None = None) -> AsyncIterator[CandleBatch]:
        key = self.bus.key(self.stream)
        await self._group(key)
        floor = after_ts if after_ts is not None else -1
        mine, heard, first = "0", time.monotonic(), True  # "0": our own unacknowledged entries first
        done: str | None = None
        while True:
            if done is not None:
                await self.bus.client.xack(key, self.group, done)
                done = None
            reply: Any = await self.bus.client.xreadgroup(
                self.group, "engine", {key: mine}, count=1, block=self.block_ms
            )
            entries = [e for _, batch in reply or [] for e in batch]
            if not entries:
                if mine == "0":
                    mine = ">"  # no pending left: new entries from here on
                    continue
                self._watch(heard)
                continue
            heard, self.stale = time.monotonic(), False
            entry_id, fields = entries[0]
            if not fields or "data" not in fields:  # trimmed from the stream (MAXLEN) while pending, or unreadable
                log.warning("market data %s: entry %s is gone from the stream; skipped", self.stream, entry_id)
                await self.bus.client.xack(key, self.group, entry_id)
                continue
            event = decode(entry_id, fields).data
            candles, backfill = self._frame(event["candles"]), self._frame(event.get("backfill", []))
            if event["ts"] <= floor or candles.is_empty():
                await self.bus.client.xack(key, self.group, entry_id)
                continue
            if first:
                backfill = pl.concat([await self._earlier(entry_id, event["ts"]), backfill], how="vertical_relaxed")
                first = False
            floor, done = event["ts"], entry_id
            yield CandleBatch(
                ts=int(event["ts"]),
                candles=candles,
                received_ns=time.perf_counter_ns(),
                backfill=backfill.sort("symbol", "ts") if not backfill.is_empty() else None,
            )

    async def _group(self, key: str) -> None:
        from redis.exceptions import ResponseError

        try:
            await self.bus.client.xgroup_create(key, self.group, id="$", mkstream=True)
        except ResponseError as exc:  # BUSYGROUP: a session that ran before reads on where it was
            if "BUSYGROUP" not in str(exc):
                raise

    def _frame(self, rows: list[list]) -> pl.DataFrame:
        mine = [r for r in rows if r[0] in self.symbols]
        frame = pl.DataFrame(mine, schema=list(COLUMNS), orient="row") if mine else pl.DataFrame(schema=list(COLUMNS))
        return frame.with_columns(pl.col("ts").cast(pl.Int64), *(pl.col(c).cast(pl.Float64) for c in COLUMNS[2:]))

    async def _earlier(self, entry_id: str, ts: int) -> pl.DataFrame:
        """The session's candles after the lake's last and before ``ts``, from the stream's
        events before ``entry_id`` (rule 3)."""
        keys = {s: SeriesKey(self.venue, s, self.timeframe) for s in self.symbols}
        lake_last = {s: self.lake.last_ts(k) if self.lake.exists(k) else None for s, k in keys.items()}
        known = [v for v in lake_last.values() if v is not None]
        if not known:
            return self._frame([])
        since = max(min(known), ts - (self.max_backfill_bars + 1) * self.step)
        lowest = f"{max(since, 0)}-0"  # bar since+step closed at since+2*step: one bar of clock slack
        rows: list[list] = []
        upper = f"({entry_id}"
        while True:
            page: Any = await self.bus.client.xrevrange(self.bus.key(self.stream), max=upper, min=lowest, count=100)
            if not page:
                break
            for eid, fields in page:
                event = decode(eid, fields).data
                rows += event["candles"] + event.get("backfill", [])
            upper = f"({page[-1][0]}"
            if decode(page[-1][0], page[-1][1]).data["ts"] <= since:
                break
        wanted = [r for r in rows if r[0] in lake_last and max(lake_last[r[0]] or -1, since) < r[1] < ts]
        return self._frame(wanted).unique(["symbol", "ts"], keep="first")

    def _watch(self, heard: float) -> None:
        age = time.monotonic() - heard
        if age > self.stale_after_s and not self.stale:
            self.stale = True
            log.warning("market data %s: no event for %.1f s; the service is down or cut off", self.stream, age)
            for symbol in self.symbols:
                if self.on_stale is not None:
                    self.on_stale(symbol, age)

    async def close(self) -> None:
        await self.bus.close()
