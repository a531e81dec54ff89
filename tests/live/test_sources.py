"""Several sources for one instrument (three loopback Binance-protocol venues, the real
ccxt.pro client on each): a source whose close leaves the others' median is dropped at once
and taken back only after healthy bars in a row; a source that goes quiet is replaced at the
bar it misses and taken back the same way; every bar goes out once, from a healthy source."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from exchange_server import BinanceLoopback
from ws_exchange_server import BinanceWsLoopback

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
    # back after three healthy bars in a row: its stream resumes at 18; its 11-17 come over REST
    # when 18 closes, the last of them perhaps within the bar's settle time
    assert back in (QUIET.stop + 1, QUIET.stop + 2)
    assert len(moves) == 4
