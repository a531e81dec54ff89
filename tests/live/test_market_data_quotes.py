"""Top of book from the market-data service (`tradeloop market-data run --quotes`): each
symbol's best bid and ask from the venue's bookTicker stream (the real ccxt.pro against the
loopback Binance WebSocket) published on the real Redis stream ``quotes:<venue>``, at most one
per symbol and interval with the newest held quote going out when the interval ends, and the
latest-price cache left to closed bars."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import redis
from exchange_server import BinanceLoopback
from ws_exchange_server import BinanceWsLoopback

from live.bus import InProcessBus
from live.marketdata.quotes import QuotePublisher
from tests.conftest import REDIS_URL
from tests.live.test_ccxt_feed import rows
from tests.live.test_feed_gaps import serve_rest
from tradeloop.arbitrage import TopOfBook
from tradeloop.bus import PRICES, decode, entry_order, price_key, quotes_stream

ROOT = Path(__file__).resolve().parents[2]
INTERVAL_MS = 150


def test_a_symbol_gets_one_quote_per_interval_and_the_newest_held_one_goes_out_when_it_ends() -> None:
    now = [0.0]
    bus = InProcessBus()
    quotes = QuotePublisher(bus, venue="binance", min_interval_ms=250, clock=lambda: now[0])
    btc = TopOfBook(venue="binance", symbol="BTC/USDT", ts=1, bid=100.0, bid_size=1.0, ask=100.2, ask_size=2.0)
    eth = replace(btc, symbol="ETH/USDT", bid=10.0, ask=10.1)

    async def run() -> list[tuple[float, bool]]:
        steps = []
        for at, top in ((0.0, btc), (0.05, eth), (0.1, replace(btc, ts=2)), (0.2, replace(btc, ts=3, bid=100.1))):
            now[0] = at
            steps.append((at, await quotes.offer(top)))
        now[0] = 0.24
        assert await quotes.flush() == 0  # the interval has not ended
        now[0] = 0.25
        assert await quotes.flush() == 1  # the newest held one (ts 3) goes out
        now[0] = 0.3
        steps.append((0.3, await quotes.offer(replace(btc, ts=4))))  # 0.05 s after the last: held
        now[0] = 0.6
        assert await quotes.flush() == 1
        return steps

    steps = asyncio.run(run())
    assert steps == [(0.0, True), (0.05, True), (0.1, False), (0.2, False), (0.3, False)]  # each symbol its own
    events = [e for _, e in bus.events[quotes_stream("binance")]]
    assert [(e["symbol"], e["ts"]) for e in events] == [("BTC-USDT", 1), ("ETH-USDT", 1), ("BTC-USDT", 3),
                                                        ("BTC-USDT", 4)]  # fmt: skip
    assert events[2] == {"venue": "binance", "symbol": "BTC-USDT", "ts": 3, "bid": 100.1, "bid_size": 1.0,
                         "ask": 100.2, "ask_size": 2.0, "mid": pytest.approx(100.15)}  # fmt: skip
    assert quotes.published == 4


def test_market_data_run_with_quotes_publishes_the_venues_top_of_book(tmp_path, redis_prefix) -> None:
    ladders = {  # each quote its own, about 2x the candles' prices; the last one sent three times
        "BTCUSDT": [(200.0 + i, 1.0 + i, 200.5 + i, 2.0) for i in range(30)],
        "ETHUSDT": [(220.0 + i, 3.0, 220.25 + i, 4.0 + i) for i in range(12)],
    }
    script = {pair: ladder + [ladder[-1]] * 2 for pair, ladder in ladders.items()}
    candles = {"BTCUSDT": rows(40, 11), "ETHUSDT": rows(40, 12)}
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    key = f"{redis_prefix}:{quotes_stream('binance')}"

    def published() -> list[tuple[str, dict]]:
        return [(i, decode(i, f).data) for i, f in client.xrange(key)]

    def last_out() -> bool:
        seen = {(e["symbol"], e["bid"]) for _, e in published()}
        return {("BTC-USDT", ladders["BTCUSDT"][-1][0]), ("ETH-USDT", ladders["ETHUSDT"][-1][0])} <= seen

    with BinanceLoopback(candles={}) as rest, BinanceWsLoopback(candles, pace_s=0.03, book_tickers=script) as ws:
        serve_rest(rest, candles)
        env = {**os.environ, "TRADELOOP_DATA_DIR": str(tmp_path / "data"), "REDIS_URL": REDIS_URL,
               "TRADELOOP_REDIS_PREFIX": redis_prefix, "TRADELOOP_EXCHANGE_API_URL": rest.url,
               "TRADELOOP_EXCHANGE_WS_URL": ws.url}  # fmt: skip
        args = ["market-data", "run", "--exchange", "binance", "--timeframe", "1m", "--symbol", "BTC-USDT"]
        args += ["--symbol", "ETH-USDT", "--quotes", "--quote-interval-ms", str(INTERVAL_MS)]
        proc = subprocess.Popen([sys.executable, "-m", "tradeloop", *args], env=env, cwd=ROOT, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
        try:
            deadline = time.monotonic() + 45
            while not last_out() and time.monotonic() < deadline and proc.poll() is None:
                time.sleep(0.1)
        finally:
            proc.terminate()
            out, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0 and "Traceback" not in out and "Unclosed" not in out, out  # a clean stop
        assert {"btcusdt@bookTicker", "ethusdt@bookTicker"} <= set(ws.subscriptions)
    events = published()
    assert last_out(), out  # the newest quote of each symbol went out, held or not
    assert f"quotes binance: {len(events)} published" in out
    for pair, symbol in (("BTCUSDT", "BTC-USDT"), ("ETHUSDT", "ETH-USDT")):
        mine = [(i, e) for i, e in events if e["symbol"] == symbol]
        got = [(e["bid"], e["bid_size"], e["ask"], e["ask_size"]) for _, e in mine]
        assert all(q in ladders[pair] for q in got) and got == sorted(got), got  # the venue's, in order
        assert len(got) < len(ladders[pair])  # throttled
        sent_ms = [entry_order(i)[0] for i, _ in mine]
        assert all(b - a >= INTERVAL_MS - 15 for a, b in zip(sent_ms, sent_ms[1:], strict=False)), sent_ms
        assert all(e["venue"] == "binance" and e["mid"] == pytest.approx((e["bid"] + e["ask"]) / 2) for _, e in mine)
        now = time.time() * 1000
        assert all(now - 60_000 < e["ts"] <= now for _, e in mine)  # bookTicker has no time: stamped on arrival
    cached = client.hget(f"{redis_prefix}:{PRICES}", price_key("binance", "BTC-USDT"))
    assert cached is None or json.loads(cached)[0] < 150  # a bar's close, never a quote's mid
