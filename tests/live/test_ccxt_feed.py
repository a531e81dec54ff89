"""The ccxt feed with the real ccxt.pro library against loopback Binance WebSocket and REST
servers: closed candles only, batched per bar, reconnects, REST fallback, staleness."""

from __future__ import annotations

import asyncio
import random
import time

import ccxt.pro
import numpy as np
import polars as pl
import pytest
from exchange_server import BinanceLoopback
from ws_exchange_server import BinanceWsLoopback

from live.feeds.ccxt_feed import CcxtFeed, CcxtFeedConfig
from tests.live.conftest import trained_world  # noqa: F401  (shared fixture)
from tradeloop.data import CandleLake
from tradeloop.data.exchanges import make_exchange
from tradeloop.retry import backoff_delay

COLUMNS = ["ts", "open", "high", "low", "close", "volume"]
T0 = 1_700_000_040_000 - 1_700_000_040_000 % 60_000


def rows(n: int, seed: int) -> list[list]:
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.001, n)))
    return [[T0 + i * 60_000, c, c * 1.001, c * 0.999, c, 5.0 + i] for i, c in enumerate(close)]


def pro_client(rest: BinanceLoopback, ws: BinanceWsLoopback | None) -> ccxt.pro.Exchange:
    return make_exchange(
        "binance", timeout_s=5.0, api_url=rest.url, websocket=True, ws_url=ws.url if ws is not None else None
    )


async def collect(feed: CcxtFeed, n: int, timeout: float = 20.0) -> list:
    out = []

    async def take() -> None:
        async for batch in feed.batches():
            out.append(batch)
            if len(out) == n:
                return

    try:
        await asyncio.wait_for(take(), timeout)
    finally:
        await feed.close()
    return out


@pytest.fixture
def rest():
    with BinanceLoopback(candles={}) as server:
        yield server


def test_websocket_candles_close_once_per_bar_across_a_dropped_connection(rest, tmp_path) -> None:
    script = {"BTCUSDT": rows(6, 1), "ETHUSDT": rows(6, 2)}
    with BinanceWsLoopback(script, drop_after=5) as ws:
        feed = CcxtFeed(
            pro_client(rest, ws),
            lake=CandleLake(tmp_path),
            symbols=["BTC-USDT", "ETH-USDT"],
            timeframe="1m",
            config=CcxtFeedConfig(settle_s=3.0, backoff_base_s=0.05),
            seed=1,
        )
        batches = asyncio.run(collect(feed, 5))
        assert ws.connections >= 2 and sum(feed.reconnects.values()) >= 1
    assert [b.ts for b in batches] == [r[0] for r in script["BTCUSDT"][:5]]  # the 6th is still forming
    for b in batches:
        assert b.candles["symbol"].to_list() == ["BTC-USDT", "ETH-USDT"]
        i = (b.ts - T0) // 60_000
        assert b.candles["close"].to_list() == pytest.approx([script["BTCUSDT"][i][4], script["ETHUSDT"][i][4]])
    assert sorted(set(ws.subscriptions)) == ["btcusdt@kline_1m", "ethusdt@kline_1m"]


def test_every_symbol_is_subscribed_in_one_frame_per_connection(rest, tmp_path) -> None:
    """ccxt throttles subscription frames (about five a second on Binance): one frame per symbol
    kept 100 symbols from streaming for 20 s at start and after each reconnect."""
    pairs = [f"C{i:02d}USDT" for i in range(24)]
    script = {pair: rows(6, i) for i, pair in enumerate(pairs)}
    template = next(s for s in rest.exchange_info["symbols"] if s["symbol"] == "BTCUSDT")
    rest.exchange_info["symbols"] += [{**template, "symbol": p, "baseAsset": p[:-4]} for p in pairs]
    for pair, candles in script.items():  # what a reconnect's backfill asks for
        rest.candles[(pair, "1m")] = pl.DataFrame(candles, schema=COLUMNS, orient="row")
    with BinanceWsLoopback(script, drop_after=30) as ws:
        feed = CcxtFeed(
            pro_client(rest, ws),
            lake=CandleLake(tmp_path),
            symbols=[f"{p[:-4]}-USDT" for p in pairs],
            timeframe="1m",
            config=CcxtFeedConfig(settle_s=3.0, backoff_base_s=0.05),
            seed=1,
        )
        batches = asyncio.run(collect(feed, 5))
        frames, connections = list(ws.subscribe_frames), ws.connections
        streams = list(ws.subscriptions)
    assert connections >= 2  # the venue dropped the first connection
    assert frames == list(range(1, connections + 1))  # one frame on each connection
    assert sorted(streams) == sorted([f"{p.lower()}@kline_1m" for p in pairs] * connections)
    # every bar batched once, in order (a symbol the drop held back comes in a later batch's
    # backfill: the feed's delivery rules have their own tests above)
    assert [b.ts for b in batches] == [r[0] for r in script[pairs[0]][:5]]


def test_a_silent_feed_is_reported_stale(rest, tmp_path) -> None:
    reported = []
    with BinanceWsLoopback({"BTCUSDT": rows(10, 3)}, silent_after=2) as ws:
        feed = CcxtFeed(
            pro_client(rest, ws),
            lake=CandleLake(tmp_path),
            symbols=["BTC-USDT"],
            timeframe="1m",
            config=CcxtFeedConfig(stale_after_s=0.6, settle_s=0.0),
            on_stale=lambda s, age: reported.append((s, age)),
        )

        async def scenario() -> None:
            task = asyncio.create_task(collect(feed, 99, timeout=2.5))
            with pytest.raises(TimeoutError):
                await task

        asyncio.run(scenario())
    assert [s for s, _ in reported] == ["BTC-USDT"] and reported[0][1] > 0.6
    assert feed.stale == {"BTC-USDT"}


def test_rest_polling_emits_only_closed_candles(rest, tmp_path) -> None:
    now = int(time.time() * 1000)
    start = now - now % 60_000 - 4 * 60_000  # 4 closed minutes, then the one forming now
    frame = pl.DataFrame(
        [[start + i * 60_000, 10.0, 11.0, 9.0, 10.5, 1.0] for i in range(5)],
        schema=["ts", "open", "high", "low", "close", "volume"],
        orient="row",
    )
    rest.candles[("BTCUSDT", "1m")] = frame
    feed = CcxtFeed(
        pro_client(rest, None),
        lake=CandleLake(tmp_path),
        symbols=["BTC-USDT"],
        timeframe="1m",
        config=CcxtFeedConfig(use_websocket=False, poll_s=0.2, settle_s=0.0),
    )
    batches = asyncio.run(collect(feed, 4))
    assert [b.ts for b in batches] == [start + i * 60_000 for i in range(4)]
    assert all(r.startswith(("/api/v3/klines", "/api/v3/time")) or "exchangeInfo" in r for r in rest.requests)


def test_rest_candles_close_by_the_venues_clock_not_this_hosts(rest, tmp_path) -> None:
    """Candles of 2023 (long closed by this host's clock) from a venue whose server time is
    inside the fifth one's minute: four go out (each followed by a later one), the fifth waits,
    poll after poll, until the venue's clock passes its end; then it goes out."""
    script = rows(5, 6)
    rest.candles[("BTCUSDT", "1m")] = pl.DataFrame(
        script, schema=["ts", "open", "high", "low", "close", "volume"], orient="row"
    )
    rest.server_time_ms = T0 + 4 * 60_000 + 30_000
    feed = CcxtFeed(
        pro_client(rest, None),
        lake=CandleLake(tmp_path),
        symbols=["BTC-USDT"],
        timeframe="1m",
        config=CcxtFeedConfig(use_websocket=False, poll_s=0.05, settle_s=0.0, lake_flush_s=None),
    )

    async def scenario() -> tuple[list, list]:
        out: list = []

        async def take() -> None:
            async for batch in feed.batches():
                out.append(batch.ts)
                if len(out) == 5:
                    return

        task = asyncio.create_task(take())
        try:
            async with asyncio.timeout(20):
                while len(out) < 4 or (len(out) == 4 and len(rest.klines_requests()) < 5):  # polled again meanwhile
                    await asyncio.sleep(0.02)
            forming = list(out)
            rest.server_time_ms = T0 + 5 * 60_000  # the venue's minute ends
            await asyncio.wait_for(task, 20)
        finally:
            task.cancel()
            await feed.close()
        return forming, out

    forming, batches = asyncio.run(scenario())
    assert forming == [r[0] for r in script[:4]]
    assert batches == [r[0] for r in script]


def test_backoff_is_exponential_with_full_jitter() -> None:
    rng = random.Random(0)
    delays = [[backoff_delay(a, base=0.5, cap=8.0, rng=rng) for _ in range(200)] for a in range(6)]
    assert all(0 <= d <= min(8.0, 0.5 * 2**a) for a, ds in enumerate(delays) for d in ds)
    assert max(delays[5]) > 4.0 and np.std(delays[3]) > 0.5  # spread out, capped


def test_a_paper_session_trades_the_websocket_feed(trained_world, rest, tmp_path) -> None:
    """`tradeloop live run --feed ccxt`: warm-up from the lake, then closed candles over the
    WebSocket drive the same engine (paper broker) bar by bar."""
    import shutil

    from live.runner import SessionConfig, run_session
    from tests.live.conftest import make_settings
    from tradeloop.data import SeriesKey
    from tradeloop.ops import EquityPoint
    from tradeloop.registry import ModelRegistry

    _, champion = ModelRegistry(trained_world.settings.registry_dir).load("sma_cross")
    after = champion.trained_until + 60_000 - T0  # bars after its training end: it may decide them (live.models)
    script = [[r[0] + after, *r[1:]] for r in rows(241, 7)]
    root = tmp_path / "data"
    history = pl.DataFrame(script[:200], schema=["ts", "open", "high", "low", "close", "volume"], orient="row")
    CandleLake(root / "lake").write(SeriesKey("binance", "BTC-USDT", "1m"), history)
    shutil.copytree(trained_world.settings.registry_dir, root / "registry")
    with BinanceWsLoopback({"BTCUSDT": script[200:]}) as ws:
        settings = make_settings(root, TRADELOOP_EXCHANGE_API_URL=rest.url, TRADELOOP_EXCHANGE_WS_URL=ws.url)
        config = SessionConfig(name="ws", exchange="binance", symbols=("BTC-USDT",), timeframe="1m", feed="ccxt")
        engine = asyncio.run(asyncio.wait_for(run_session(settings, config, max_bars=40), 60))
    marks = engine.store.frame(EquityPoint, engine.session.id).sort("ts")
    assert marks["ts"].to_list() == [r[0] for r in script[200:240]]
    assert [t.source for t in engine.store.thresholds(engine.session.id)] == ["model"]
    assert engine.window.height == 240  # 200 bars of warm-up + 40 live, under the 400-bar window


def test_a_stale_feed_lands_in_the_sessions_audit_log(trained_world, rest, tmp_path) -> None:
    import shutil

    from live.runner import SessionConfig, run_session
    from tests.live.conftest import make_settings
    from tradeloop.data import SeriesKey
    from tradeloop.ops import OpsStore

    script = rows(215, 8)
    root = tmp_path / "data"
    history = pl.DataFrame(script[:200], schema=["ts", "open", "high", "low", "close", "volume"], orient="row")
    CandleLake(root / "lake").write(SeriesKey("binance", "BTC-USDT", "1m"), history)
    shutil.copytree(trained_world.settings.registry_dir, root / "registry")
    with BinanceWsLoopback({"BTCUSDT": script[200:]}, silent_after=5) as ws:  # then the exchange goes quiet
        settings = make_settings(root, TRADELOOP_EXCHANGE_API_URL=rest.url, TRADELOOP_EXCHANGE_WS_URL=ws.url)
        config = SessionConfig(
            name="quiet", exchange="binance", symbols=("BTC-USDT",), timeframe="1m", feed="ccxt", feed_stale_after_s=0.5
        )
        store = OpsStore.open(settings.effective_database_url)

        def stale_events() -> list:
            if "quiet" not in {row.name for row in store.sessions()}:  # not made yet
                return []
            return [e for e in store.audit_log(store.session("quiet").id) if e.event == "feed_stale"]

        async def until_stale() -> None:  # the session runs until its feed was judged stale (a minute at most)
            task = asyncio.create_task(run_session(settings, config))
            try:
                for _ in range(600):
                    if task.done() or (stale_events() and store.session("quiet").last_bar_ts == script[203][0]):
                        break
                    await asyncio.sleep(0.1)
                assert not task.done(), task.exception()  # it keeps waiting for the quiet exchange, not dying
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

        asyncio.run(until_stale())
    stale = stale_events()
    assert [e.detail["symbol"] for e in stale] == ["BTC-USDT"] and stale[0].detail["seconds"] >= 0.5
    assert store.session("quiet").last_bar_ts == script[203][0]  # 5 sent: 4 closed, the 5th still forming
