"""Several sources for one instrument (three loopback Binance-protocol venues, the real
ccxt.pro client on each): a source whose close leaves the others' median is dropped at once
and taken back only after healthy bars in a row; a source that goes quiet is replaced at the
bar it misses and taken back the same way; every bar goes out once, from a healthy source."""

from __future__ import annotations

import asyncio
import contextlib
import types

import polars as pl
import pytest
from exchange_server import BinanceLoopback
from ws_exchange_server import BinanceWsLoopback

from live.feeds.base import CandleBatch
from live.feeds.ccxt_feed import CcxtFeed, CcxtFeedConfig
from live.marketdata.sources import SourcedFeed
from tests.live.test_ccxt_feed import T0, pro_client, rows
from tests.live.test_feed_gaps import serve_rest
from tradeloop.data import CandleLake

STEP = 60_000
BARS = 26
DIVERGED = range(3, 6)  # the primary's closes are 5% off at these bars
QUIET = range(12, 18)  # the primary's stream sends nothing for these


def test_failover_on_divergence_and_silence_and_fail_back_after_healthy_bars(tmp_path) -> None:
    script = rows(BARS + 4, 21)
    primary = [list(r) for r in script]
    for i in DIVERGED:
        primary[i][4] *= 1.05
    with contextlib.ExitStack() as stack:
        feeds = []
        for n, candles in enumerate((primary, script, script)):
            rest = stack.enter_context(BinanceLoopback(candles={}))
            serve_rest(rest, {"BTCUSDT": primary if n == 0 else script})
            holes = {"BTCUSDT": set(QUIET)} if n == 0 else {}
            ws = stack.enter_context(BinanceWsLoopback({"BTCUSDT": candles}, pace_s=0.1, holes=holes))
            config = CcxtFeedConfig(settle_s=0.0, lake_flush_s=None, stale_after_s=60.0)
            feeds.append(
                CcxtFeed(pro_client(rest, ws), lake=CandleLake(tmp_path / str(n)), symbols=["BTC-USDT"],
                         timeframe="1m", config=config, seed=n)
            )  # fmt: skip
        sourced = SourcedFeed(feeds, divergence=0.02, failback_bars=3, settle_s=0.35)

        async def collect() -> list:
            out = []
            try:
                async for batch in sourced.batches():
                    out.append(batch)
                    if len(out) == BARS:
                        return out
            finally:
                await sourced.close()
            return out

        batches = asyncio.run(asyncio.wait_for(collect(), 60))
    assert [b.ts for b in batches] == [T0 + i * STEP for i in range(BARS)]  # every bar once
    closes = [b.candles["close"][0] for b in batches]
    for i, close in enumerate(closes):  # never a diverged close: each bar from a healthy source
        assert close == pytest.approx(script[i][4]), i
    moves = [
        ((s.bar_ts - T0) // STEP, s.source_from[-1], s.source_to[-1], s.why.split(":")[0]) for s in sourced.switches
    ]
    assert moves[:2] == [(3, "0", "1", "failover"), (8, "1", "0", "fail-back")]  # back after 6, 7, 8 healthy
    assert "from the sources' median" in sourced.switches[0].why
    (quiet, lost, _, why), (back, _, to, _) = moves[2], moves[3]
    # the primary misses bar 11 too: the candle forming when it went quiet never closed over its socket
    assert quiet in (11, 12) and (lost, why) == ("0", "failover") and to == "0"
    # back after three healthy bars in a row, at the first bar that makes three: its stream
    # resumes at 18; its 11-17 come over REST when 18 closes, late for their bars (or the last
    # of them within a bar's settle time, on a quick machine)
    primary_ok = [0 in sources for _, _, sources in sourced.healthy]
    assert QUIET.stop <= back and primary_ok[back - 2 : back + 1] == [True] * 3 and not primary_ok[back - 3]
    assert len(moves) == 4


def test_a_venue_whose_health_score_falls_loses_its_symbols_until_it_recovers(tmp_path) -> None:
    """The primary venue's recent calls all timed out (its health score falls to 0): the next
    bar comes from the other venue; once its calls succeed again it takes the symbol back after
    failback_bars healthy bars."""
    import ccxt

    from tradeloop.data.exchanges import make_exchange
    from tradeloop.observability.venues import VenueHealth

    script = rows(40, 22)
    health = VenueHealth()
    with contextlib.ExitStack() as stack:
        feeds = []
        for venue in ("binance", "binanceus"):
            rest = stack.enter_context(BinanceLoopback(candles={}))
            serve_rest(rest, {"BTCUSDT": script})
            ws = stack.enter_context(BinanceWsLoopback({"BTCUSDT": script}, pace_s=0.05))
            client = make_exchange(venue, timeout_s=5.0, api_url=rest.url, websocket=True, ws_url=ws.url)
            config = CcxtFeedConfig(settle_s=0.0, lake_flush_s=None)
            feeds.append(CcxtFeed(client, lake=CandleLake(tmp_path / venue), symbols=["BTC-USDT"], timeframe="1m",
                                  config=config))  # fmt: skip
        sourced = SourcedFeed(feeds, failback_bars=3, settle_s=0.3, health=health, min_score=0.5)
        for _ in range(20):
            health.record_call("binance", endpoint="GET klines", seconds=10.0, error=ccxt.RequestTimeout("slow"))

        async def collect() -> list:
            out = []
            try:
                async for batch in sourced.batches():
                    out.append(batch)
                    if len(out) == 4:  # the venue answers again
                        for _ in range(100):
                            health.record_call("binance", endpoint="GET klines", seconds=0.01)
                    if len(out) == 12:
                        return out
            finally:
                await sourced.close()
            return out

        batches = asyncio.run(asyncio.wait_for(collect(), 60))
    assert [b.ts for b in batches] == [T0 + i * STEP for i in range(12)]
    moves = [((s.bar_ts - T0) // STEP, s.source_to, s.why) for s in sourced.switches]
    assert [(bar, to) for bar, to, _ in moves] == [(0, "binanceus#1"), (6, "binance#0")]  # healthy at 4, 5, 6
    assert "binance's health score 0.00 is under 0.50" in moves[0][2]


class ScriptedSource:
    """A source that hands over the batches a script gives it, when the script says (the order
    across sources is the test's to set; the real sources are tested above)."""

    def __init__(self, venue: str, script) -> None:
        self.exchange, self.symbols, self.stale = types.SimpleNamespace(id=venue), ["BTC-USDT", "ETH-USDT"], set()
        self.script = script

    async def batches(self, *, after_ts: int | None = None):
        async for batch in self.script():
            yield batch

    async def close(self) -> None:
        return None


def candles(*rows: tuple[str, int, float]) -> pl.DataFrame:
    return pl.DataFrame(
        [[s, ts, c, c, c, c, 1.0] for s, ts, c in rows],
        schema={
            "symbol": pl.String,
            "ts": pl.Int64,
            **dict.fromkeys(("open", "high", "low", "close", "volume"), pl.Float64),
        },
        orient="row",
    )


def test_a_late_batchs_backfill_goes_out_with_the_next_bar() -> None:
    """Bar 1 goes out from the second source (the first has not delivered it); the first
    source's batch of bar 1 comes late, with the ETH candle of bar 0 it fetched over REST as
    backfill: that candle goes out with bar 2's backfill, not dropped with the late batch."""
    bar1_out, late_sent = asyncio.Event(), asyncio.Event()

    async def first():
        await bar1_out.wait()
        yield CandleBatch(ts=T0 + STEP, candles=candles(("BTC-USDT", T0 + STEP, 1.0), ("ETH-USDT", T0 + STEP, 2.0)),
                          received_ns=0, backfill=candles(("ETH-USDT", T0, 1.5)))  # fmt: skip
        late_sent.set()
        both = candles(("BTC-USDT", T0 + 2 * STEP, 1.0), ("ETH-USDT", T0 + 2 * STEP, 2.0))
        yield CandleBatch(ts=T0 + 2 * STEP, candles=both, received_ns=0)

    async def second():
        yield CandleBatch(ts=T0 + STEP, candles=candles(("BTC-USDT", T0 + STEP, 1.0)), received_ns=0)
        await late_sent.wait()
        yield CandleBatch(ts=T0 + 2 * STEP, candles=candles(("BTC-USDT", T0 + 2 * STEP, 1.0)), received_ns=0)

    sourced = SourcedFeed([ScriptedSource("a", first), ScriptedSource("b", second)], settle_s=0.0)  # type: ignore[list-item]

    async def scenario() -> list[CandleBatch]:
        out = []
        async for batch in sourced.batches():
            out.append(batch)
            bar1_out.set()
            if len(out) == 2:
                return out
        return out

    one, two = asyncio.run(asyncio.wait_for(scenario(), 10))
    assert one.ts == T0 + STEP and one.candles["symbol"].to_list() == ["BTC-USDT"]
    assert two.backfill is not None and two.backfill.select("symbol", "ts", "close").rows() == [("ETH-USDT", T0, 1.5)]
