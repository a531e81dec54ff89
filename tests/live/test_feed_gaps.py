"""Bars missed during an outage reach the engine before it decides again, live candles are kept
in the lake, and a symbol that fell back to REST polling comes back to the WebSocket: the
real ccxt.pro client against the loopback Binance WebSocket and REST servers, which drop and
skip candles as Binance does (a reconnect resumes with the candle forming now)."""

from __future__ import annotations

import asyncio
import shutil

import polars as pl
import pytest
from exchange_server import BinanceLoopback
from ws_exchange_server import BinanceWsLoopback

from live.feeds.ccxt_feed import CcxtFeed, CcxtFeedConfig
from tests.live.conftest import make_settings, trained_world  # noqa: F401  (shared fixture)
from tests.live.test_ccxt_feed import T0, collect, pro_client, rows
from tradeloop.data import CandleLake, SeriesKey
from tradeloop.ops import EquityPoint

STEP = 60_000
PAIRS = {"BTC-USDT": "BTCUSDT", "ETH-USDT": "ETHUSDT"}


def serve_rest(rest: BinanceLoopback, script: dict[str, list[list]]) -> None:
    """The REST venue knows every candle of the script."""
    for pair, candles in script.items():
        rest.candles[(pair, "1m")] = pl.DataFrame(candles, schema=["ts", "open", "high", "low", "close", "volume"],
                                                  orient="row")  # fmt: skip


def delivered(batches) -> dict[str, list[tuple[int, float]]]:
    """Every (ts, close) each symbol reached the engine with, in the order it did (a batch's
    backfill before its candles)."""
    out: dict[str, list[tuple[int, float]]] = {s: [] for s in PAIRS}
    for b in batches:
        for frame in (b.backfill, b.candles):
            if frame is not None:
                for symbol, ts, close in frame.select("symbol", "ts", "close").iter_rows():
                    out[symbol].append((ts, close))
    return out


def test_a_stream_that_went_quiet_for_four_bars_gets_them_over_rest_before_its_next_candle(tmp_path) -> None:
    """ETH's stream misses candles 3 to 6 while BTC's goes on: BTC is batched alone meanwhile,
    and ETH's next candle reaches the engine only after its missed bars, fetched over REST;
    every bar of both symbols arrives exactly once, in time order."""
    script = {"BTCUSDT": rows(20, 1), "ETHUSDT": rows(20, 2)}
    with (
        BinanceLoopback(candles={}) as rest,
        BinanceWsLoopback(script, pace_s=0.1, holes={"ETHUSDT": {3, 4, 5, 6}}) as ws,
    ):
        serve_rest(rest, script)
        feed = CcxtFeed(
            pro_client(rest, ws), lake=CandleLake(tmp_path), symbols=list(PAIRS), timeframe="1m",
            config=CcxtFeedConfig(settle_s=0.25, lake_flush_s=30.0), seed=1,
        )  # fmt: skip
        batches = asyncio.run(collect(feed, 14))  # ETH's last missed bars may come with a later batch
    got = delivered(batches)
    for symbol, pair in PAIRS.items():
        expected = [(r[0], pytest.approx(r[4])) for r in script[pair][:10]]
        assert got[symbol][:10] == expected, symbol  # every bar once, in order, none lost in the hole
    assert feed.gaps.filled == {"ETH-USDT": 5}  # 3 to 6, and 2: forming when the stream went quiet, never finished
    assert [r for r in rest.requests if "ETHUSDT" in r and "klines" in r]  # the hole came from REST
    seen_eth = set()
    for b in batches:  # rule: ETH is batched only when every earlier bar of it has reached the engine
        if b.backfill is not None:
            seen_eth |= set(b.backfill.filter(pl.col("symbol") == "ETH-USDT")["ts"].to_list())
        eth = b.candles.filter(pl.col("symbol") == "ETH-USDT")["ts"].to_list()
        for ts in eth:
            assert {T0 + i * STEP for i in range((ts - T0) // STEP)} <= seen_eth, ts
            seen_eth.add(ts)
    lake = CandleLake(tmp_path)  # and the lake keeps what live saw, written when the feed closed
    for symbol, pair in PAIRS.items():
        stored = lake.read(SeriesKey("binance", symbol, "1m"))
        assert stored["ts"].to_list()[:10] == [r[0] for r in script[pair][:10]]
        assert stored["close"].to_list()[:10] == pytest.approx([r[4] for r in script[pair][:10]])


def test_a_dropped_socket_that_resumes_later_misses_nothing_and_rest_gives_the_unfinished_candle(tmp_path) -> None:
    """The socket drops while candle 4 forms and comes back at candle 8 (Binance sends only the
    current kline): candles 4 to 7 come from REST, 4 with its final values, not the socket's last."""
    script = {"BTCUSDT": rows(40, 3)}  # the socket goes on after the gap's fetch, as a venue's does
    ws_script = {"BTCUSDT": [list(r) for r in script["BTCUSDT"]]}
    ws_script["BTCUSDT"][4][4] *= 1.01  # what the socket showed of candle 4 before the drop
    with (
        BinanceLoopback(candles={}) as rest,
        BinanceWsLoopback(ws_script, pace_s=0.05, drop_after=5, skip_on_reconnect=4) as ws,
    ):
        serve_rest(rest, script)
        feed = CcxtFeed(
            pro_client(rest, ws), lake=CandleLake(tmp_path), symbols=["BTC-USDT"], timeframe="1m",
            config=CcxtFeedConfig(settle_s=0.0, backoff_base_s=0.05, lake_flush_s=None), seed=2,
        )  # fmt: skip
        batches = asyncio.run(collect(feed, 12))
        assert ws.connections == 2
    got = delivered(batches)["BTC-USDT"]
    assert got[:12] == [(r[0], pytest.approx(r[4])) for r in script["BTCUSDT"][:12]]
    assert feed.gaps.filled == {"BTC-USDT": 4}
    assert not list(tmp_path.iterdir())  # lake_flush_s=None: this feed keeps nothing


def test_a_symbol_on_rest_after_socket_failures_comes_back_after_probes_in_a_row(tmp_path) -> None:
    """Three failed connects put the symbol on REST polling; the socket is reachable again: it
    is probed every failback_after_s and taken back after two good probes in a row."""
    script = {"BTCUSDT": rows(400, 5)}
    with BinanceLoopback(candles={}) as rest:
        serve_rest(rest, script)
        unreachable = f"ws://127.0.0.1:{_closed_port()}/ws"
        client = pro_client(rest, None)
        client.urls["api"]["ws"] = {k: unreachable for k in ("spot", "margin", "future", "delivery", "ws-api")}
        with BinanceWsLoopback(script, pace_s=0.05) as ws:
            feed = CcxtFeed(
                client, lake=CandleLake(tmp_path), symbols=["BTC-USDT"], timeframe="1m",
                config=CcxtFeedConfig(settle_s=0.0, poll_s=0.1, backoff_base_s=0.01, backoff_cap_s=0.05,
                                      failback_after_s=0.3, failback_probes=2, lake_flush_s=None),
            )  # fmt: skip

            async def scenario() -> None:
                task = asyncio.create_task(collect(feed, 10_000, timeout=8.0))
                while "BTC-USDT" not in feed.rest_fallback:
                    await asyncio.sleep(0.05)
                for key in client.urls["api"]["ws"]:  # the socket is reachable again
                    client.urls["api"]["ws"][key] = ws.url
                while feed.failbacks["BTC-USDT"] == 0:
                    await asyncio.sleep(0.05)
                task.cancel()

            asyncio.run(asyncio.wait_for(scenario(), 20))
    assert feed.rest_fallback == set() and feed.failbacks == {"BTC-USDT": 1}
    assert ws.connections >= 1 and sum(feed.reconnects.values()) >= 3


def test_the_engine_decides_every_bar_on_a_window_without_a_hole_across_an_outage(trained_world, tmp_path) -> None:
    """`tradeloop live run --feed ccxt` across a socket drop that skips four bars: the engine's
    window holds every bar, it marks equity at every bar, and the lake holds every candle."""
    from live.runner import SessionConfig, run_session
    from tradeloop.registry import ModelRegistry

    _, champion = ModelRegistry(trained_world.settings.registry_dir).load("sma_cross")
    after = champion.trained_until + STEP - T0  # bars after its training end: it may decide them
    script = [[r[0] + after, *r[1:]] for r in rows(241, 7)]
    root = tmp_path / "data"
    history = pl.DataFrame(script[:200], schema=["ts", "open", "high", "low", "close", "volume"], orient="row")
    CandleLake(root / "lake").write(SeriesKey("binance", "BTC-USDT", "1m"), history)
    shutil.copytree(trained_world.settings.registry_dir, root / "registry")
    with (
        BinanceLoopback(candles={}) as rest,
        BinanceWsLoopback({"BTCUSDT": script[200:]}, drop_after=10, skip_on_reconnect=4) as ws,
    ):
        serve_rest(rest, {"BTCUSDT": script})
        settings = make_settings(root, TRADELOOP_EXCHANGE_API_URL=rest.url, TRADELOOP_EXCHANGE_WS_URL=ws.url)
        config = SessionConfig(name="gap", exchange="binance", symbols=("BTC-USDT",), timeframe="1m", feed="ccxt")
        engine = asyncio.run(asyncio.wait_for(run_session(settings, config, max_bars=30), 60))
    bars = [r[0] for r in script[200:230]]
    marks = engine.store.frame(EquityPoint, engine.session.id).sort("ts")
    assert marks["ts"].to_list() == bars  # decided every bar, the four the socket skipped included
    assert engine.window["ts"].to_list() == [r[0] for r in script[:230]]  # no hole
    stored = CandleLake(root / "lake").read(SeriesKey("binance", "BTC-USDT", "1m"))
    assert stored["ts"].to_list() == [r[0] for r in script[:230]]


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_backfilled_candles_join_the_window_before_the_bars_candles_once_each() -> None:
    """A batch's backfill goes into each symbol's window in time order, ahead of the bar's
    own candle; one the window already holds (the lake had it at warm-up) is not added twice."""
    from live.feeds.base import CandleBatch, roll_window

    def candles(symbol: str, bars: range) -> pl.DataFrame:
        return pl.DataFrame(
            {"symbol": symbol, "ts": [T0 + i * STEP for i in bars], "open": 1.0, "high": 1.0, "low": 1.0,
             "close": [float(i) for i in bars], "volume": 1.0}
        )  # fmt: skip

    window = pl.concat([candles("ETH-USDT", range(3)), candles("BTC-USDT", range(5))])
    bar = pl.concat([candles("BTC-USDT", range(5, 6)), candles("ETH-USDT", range(5, 6))])
    late = candles("ETH-USDT", range(2, 5))  # 2 is in the window already
    rolled, gained = roll_window(
        window, CandleBatch(ts=T0 + 5 * STEP, candles=bar, received_ns=0, backfill=late), bars=5
    )
    assert gained == {"ETH-USDT": 2}
    for symbol, first in (("BTC-USDT", 1), ("ETH-USDT", 1)):
        assert rolled.filter(pl.col("symbol") == symbol)["close"].to_list() == [float(i) for i in range(first, 6)]
    plain, none = roll_window(window, CandleBatch(ts=T0 + 5 * STEP, candles=bar, received_ns=0), bars=400)
    assert none == {} and plain.filter(pl.col("symbol") == "ETH-USDT")["close"].to_list() == [0.0, 1.0, 2.0, 5.0]


def test_a_refused_backfill_holds_the_symbol_back_and_its_task_tries_again(tmp_path) -> None:
    """The venue refuses the gap's first two klines requests (an exchange error, not a network
    one): the symbol's task does not die; its candles wait behind the gap (none is delivered
    over a hole) and go out once a retry fills it."""
    from loopback_http import Fault

    script = {"BTCUSDT": rows(40, 3)}
    refused = Fault(400, {"code": -1121, "msg": "Invalid symbol."})
    with (
        BinanceLoopback(candles={}, faults={1: refused, 2: refused}) as rest,
        BinanceWsLoopback(script, pace_s=0.05, drop_after=5, skip_on_reconnect=4) as ws,
    ):
        serve_rest(rest, script)
        feed = CcxtFeed(
            pro_client(rest, ws), lake=CandleLake(tmp_path), symbols=["BTC-USDT"], timeframe="1m",
            config=CcxtFeedConfig(settle_s=0.0, backoff_base_s=0.05, backoff_cap_s=0.2, lake_flush_s=None), seed=3,
        )  # fmt: skip
        batches = asyncio.run(collect(feed, 12))
    got = delivered(batches)["BTC-USDT"]
    assert got[:12] == [(r[0], pytest.approx(r[4])) for r in script["BTCUSDT"][:12]]
    assert feed.errors["BTC-USDT"].startswith("BadSymbol") and feed.gaps.filled == {"BTC-USDT": 4}


def test_a_bar_that_failed_to_commit_comes_again_when_the_engine_reopens_the_feed(tmp_path) -> None:
    """After a database outage the engine reopens batches(after_ts=its last committed bar) on
    the same feed: the bar it could not commit comes again (found by a hostile review: it did not)."""
    import contextlib

    script = {"BTCUSDT": rows(40, 3)}
    with BinanceLoopback(candles={}) as rest, BinanceWsLoopback(script, pace_s=0.05) as ws:
        serve_rest(rest, script)
        feed = CcxtFeed(
            pro_client(rest, ws), lake=CandleLake(tmp_path), symbols=["BTC-USDT"], timeframe="1m",
            config=CcxtFeedConfig(settle_s=0.0, lake_flush_s=None), seed=1,
        )  # fmt: skip

        async def scenario() -> tuple[list, list]:
            seen, again = [], []
            async with contextlib.aclosing(feed.batches()) as batches:
                async for b in batches:
                    seen.append(b.ts)
                    if len(seen) == 3:
                        break  # the third bar failed to commit
            async with contextlib.aclosing(feed.batches(after_ts=seen[1])) as batches:
                async for b in batches:
                    again += (b.backfill["ts"].to_list() if b.backfill is not None else []) + b.candles["ts"].to_list()
                    if len(again) >= 2:
                        break
            await feed.close()
            return seen, again

        seen, again = asyncio.run(asyncio.wait_for(scenario(), 20))
    assert again[:2] == [seen[2], seen[2] + STEP]


def test_a_kline_out_of_line_with_the_stream_does_not_wedge_the_symbol(tmp_path) -> None:
    """One kline dated days ahead of the stream (a venue's glitch): the updates that keep coming
    from before it drop it, and every bar still arrives (found by a hostile review: it wedged)."""
    script = {"BTCUSDT": rows(30, 3)}
    ws_rows = [list(r) for r in script["BTCUSDT"]]
    bogus = list(ws_rows[5])
    bogus[0] = T0 + 10_000 * STEP
    ws_rows.insert(6, bogus)
    with BinanceLoopback(candles={}) as rest, BinanceWsLoopback({"BTCUSDT": ws_rows}, pace_s=0.05) as ws:
        serve_rest(rest, script)
        feed = CcxtFeed(
            pro_client(rest, ws), lake=CandleLake(tmp_path), symbols=["BTC-USDT"], timeframe="1m",
            config=CcxtFeedConfig(settle_s=0.0, lake_flush_s=None), seed=1,
        )  # fmt: skip
        batches = asyncio.run(collect(feed, 20))
    assert [b.ts for b in batches] == [r[0] for r in script["BTCUSDT"][:20]]


def test_an_empty_backfill_holds_the_candle_after_the_gap_until_the_venue_has_its_bars(tmp_path) -> None:
    """The socket drops and resumes four bars later while the venue's REST has no candle yet (it
    answers an empty list, not an error): the candle after the gap is held, never passed on as
    if it followed the last one, and the fetch is retried; once REST has the bars, every bar
    reaches the engine once, in order (backfill rule 4)."""
    script = {"BTCUSDT": rows(40, 4)}
    expected = [(r[0], pytest.approx(r[4])) for r in script["BTCUSDT"][:12]]
    with (
        BinanceLoopback(candles={}) as rest,
        BinanceWsLoopback(script, pace_s=0.05, drop_after=5, skip_on_reconnect=4) as ws,
    ):
        feed = CcxtFeed(
            pro_client(rest, ws), lake=CandleLake(tmp_path), symbols=["BTC-USDT"], timeframe="1m",
            config=CcxtFeedConfig(settle_s=0.0, backoff_base_s=0.05, backoff_cap_s=0.2, lake_flush_s=None,
                                  hole_tries=1000), seed=4,
        )  # fmt: skip

        async def scenario() -> tuple[list, list]:
            out: list = []

            async def take() -> None:
                async for batch in feed.batches():
                    out.append(batch)
                    if len(out) == 12:
                        return

            task = asyncio.create_task(take())
            try:
                async with asyncio.timeout(20):  # the gap is asked for three times while REST has nothing
                    while len(rest.klines_requests()) < 3:
                        await asyncio.sleep(0.02)
                before = delivered(out)["BTC-USDT"]
                serve_rest(rest, script)
                await asyncio.wait_for(task, 20)
            finally:
                task.cancel()
                await feed.close()
            return before, out

        before, batches = asyncio.run(scenario())
    assert before == expected[: len(before)]  # nothing went out over the hole while REST had nothing
    assert delivered(batches)["BTC-USDT"][:12] == expected
    assert "lacks" in feed.errors["BTC-USDT"] and not feed.gaps.holes


def test_a_gap_the_venue_never_has_is_a_hole_reported_after_the_tries(tmp_path) -> None:
    """REST never has the missed bars (a venue that sends no candle for a bar without trades):
    after ``hole_tries`` empty answers the candle goes out after the hole, which is kept."""
    script = {"BTCUSDT": rows(40, 5)}
    with (
        BinanceLoopback(candles={}) as rest,
        BinanceWsLoopback(script, pace_s=0.05, drop_after=5, skip_on_reconnect=4) as ws,
    ):
        feed = CcxtFeed(
            pro_client(rest, ws), lake=CandleLake(tmp_path), symbols=["BTC-USDT"], timeframe="1m",
            config=CcxtFeedConfig(settle_s=0.0, backoff_base_s=0.05, backoff_cap_s=0.2, lake_flush_s=None,
                                  hole_tries=2), seed=5,
        )  # fmt: skip
        batches = asyncio.run(collect(feed, 6))
    [(first, last)] = feed.gaps.holes["BTC-USDT"]
    got = [ts for ts, _ in delivered(batches)["BTC-USDT"]]
    assert got == sorted(got) and first not in got and last not in got
    assert got[got.index(first - STEP) + 1] == last + STEP  # the hole is exactly what went missing
