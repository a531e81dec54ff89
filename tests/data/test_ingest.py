"""Ingestion with the real ccxt library against a loopback server speaking Binance's REST API."""

import json
import random

import ccxt
import polars as pl
import pytest
from exchange_server import FIXTURES, BinanceLoopback, Fault, kline_rows, rate_limited, server_error

from tradeloop.data import CandleLake, SeriesKey
from tradeloop.data.exchanges import make_exchange
from tradeloop.data.ingest import CandleIngestor
from tradeloop.errors import (
    ConfigError,
    RetryExhaustedError,
    UnknownExchangeError,
    UnknownSymbolError,
    UnsupportedTimeframeError,
)
from tradeloop.retry import RetryPolicy, call_with_retry

FAST = RetryPolicy(max_attempts=4, base_delay_s=0.01, max_delay_s=0.05, rate_limit_delay_s=0.02)
KEY = SeriesKey("binance", "BTC/USDT", "1d")


def ingestor(server: BinanceLoopback, lake: CandleLake, *, page_limit: int = 100, sleeps=None):
    exchange = make_exchange("binance", timeout_s=5, api_url=server.url)
    record = sleeps.append if sleeps is not None else (lambda s: None)
    return CandleIngestor(exchange, lake, retry=FAST, page_limit=page_limit, sleep=record)


def test_server_speaks_binance_kline_format() -> None:
    """ccxt parses our kline bodies exactly as it parses the recorded Binance response."""
    case = json.loads((FIXTURES / "ccxt_static_responses.json").read_text())["methods"]["fetchOHLCV"][0]
    recorded = case["httpResponse"]
    frame = pl.DataFrame(
        [r[:6] for r in recorded], schema=["ts", "open", "high", "low", "close", "volume"], orient="row"
    ).cast(
        {
            "ts": pl.Int64,
            "open": pl.Float64,
            "high": pl.Float64,
            "low": pl.Float64,
            "close": pl.Float64,
            "volume": pl.Float64,
        }
    )
    ours = kline_rows(frame, 3_600_000)
    assert [r[0] for r in ours] == [r[0] for r in recorded]
    assert [r[6] for r in ours] == [int(r[6]) for r in recorded]
    with BinanceLoopback({("BTCUSDT", "1h"): frame}) as server:
        exchange = make_exchange("binance", api_url=server.url)
        since, limit = case["input"][2], case["input"][3]
        parsed = exchange.fetch_ohlcv("BTC/USDT", "1h", since=since, limit=limit)
    assert parsed == case["parsedResponse"]


def test_backfill_paginates_and_matches_source(lake: CandleLake, btc_1d: pl.DataFrame) -> None:
    with BinanceLoopback({("BTCUSDT", "1d"): btc_1d}) as server:
        result = ingestor(server, lake).ingest("BTC/USDT", "1d", since=int(btc_1d["ts"][0]))
        pages = server.klines_requests()
    assert result.added == btc_1d.height == 366
    assert len(pages) == 5  # 4 pages of <= 100 candles, then an empty page
    assert "startTime=" in pages[1] and "limit=100" in pages[0]
    assert lake.read(KEY).equals(btc_1d)


def test_rerun_is_incremental_and_idempotent(lake: CandleLake, btc_1d: pl.DataFrame) -> None:
    with BinanceLoopback({("BTCUSDT", "1d"): btc_1d[:200]}) as server:
        ingestor(server, lake).ingest("BTC/USDT", "1d", since=int(btc_1d["ts"][0]))
    with BinanceLoopback({("BTCUSDT", "1d"): btc_1d}) as server:
        again = ingestor(server, lake).ingest("BTC/USDT", "1d", since=int(btc_1d["ts"][0]))
        first_page = server.klines_requests()[0]
    assert again.added == 166
    assert f"startTime={btc_1d['ts'][200]}" in first_page  # resumed after the last stored candle
    with BinanceLoopback({("BTCUSDT", "1d"): btc_1d}) as server:
        third = ingestor(server, lake).ingest("BTC/USDT", "1d", since=int(btc_1d["ts"][0]))
    assert third.added == 0
    assert lake.read(KEY).equals(btc_1d)


@pytest.mark.parametrize("fault", [rate_limited(), server_error(503), server_error(500)], ids=["429", "503", "500"])
def test_backfill_survives_faults_mid_way(lake: CandleLake, btc_1d: pl.DataFrame, fault: Fault) -> None:
    sleeps: list[float] = []
    with BinanceLoopback({("BTCUSDT", "1d"): btc_1d}, faults={3: fault, 4: fault}) as server:
        result = ingestor(server, lake, sleeps=sleeps).ingest("BTC/USDT", "1d", since=int(btc_1d["ts"][0]))
        requests = server.klines_requests()
    assert result.added == btc_1d.height
    assert lake.read(KEY).equals(btc_1d)
    assert len(requests) == 7 and requests[2] == requests[3] == requests[4]  # same page retried
    assert len(sleeps) == 2 and sleeps[1] > sleeps[0]  # exponential backoff
    if fault.status == 429:
        assert sleeps[0] >= FAST.rate_limit_delay_s * (1 - FAST.jitter)


def test_exhausted_retries_keep_stored_pages_and_resume(lake: CandleLake, btc_1d: pl.DataFrame) -> None:
    faults = {n: server_error(502) for n in range(3, 3 + FAST.max_attempts)}
    with BinanceLoopback({("BTCUSDT", "1d"): btc_1d}, faults=faults) as server:
        with pytest.raises(RetryExhaustedError, match="resumes where it stopped"):
            ingestor(server, lake).ingest("BTC/USDT", "1d", since=int(btc_1d["ts"][0]))
    assert lake.read(KEY).equals(btc_1d[:200])  # two committed pages, intact
    with BinanceLoopback({("BTCUSDT", "1d"): btc_1d}) as server:
        ingestor(server, lake).ingest("BTC/USDT", "1d", since=int(btc_1d["ts"][0]))
    assert lake.read(KEY).equals(btc_1d)


def test_unknown_symbol_timeframe_exchange(lake: CandleLake, btc_1d: pl.DataFrame) -> None:
    with BinanceLoopback({("BTCUSDT", "1d"): btc_1d}) as server:
        ing = ingestor(server, lake)
        with pytest.raises(UnknownSymbolError, match="DOGE/USDT"):
            ing.ingest("DOGE/USDT", "1d", since=0)
        with pytest.raises(UnsupportedTimeframeError, match="7m"):
            ing.ingest("BTC/USDT", "7m", since=0)
        assert server.klines_requests() == []
    with pytest.raises(UnknownExchangeError, match="notanexchange"):
        make_exchange("notanexchange")


@pytest.mark.parametrize("timeframe", ["01d", "1d\n", "\u0661d"])
def test_a_malformed_timeframe_is_refused_before_any_request(
    lake: CandleLake, btc_1d: pl.DataFrame, timeframe: str
) -> None:
    with BinanceLoopback({("BTCUSDT", "1d"): btc_1d}) as server:
        ing = ingestor(server, lake)
        with pytest.raises(ConfigError, match="timeframe="):
            ing.ingest("BTC/USDT", timeframe, since=0)
        assert ing.requests == 0 and server.klines_requests() == []
    assert lake.list_series() == []


def test_non_retryable_errors_are_not_retried() -> None:
    calls = []

    def bad():
        calls.append(1)
        raise ccxt.BadSymbol('binance {"code":-1121}')

    with pytest.raises(ccxt.BadSymbol):
        call_with_retry(bad, policy=FAST, what="x", sleep=lambda s: None)
    assert len(calls) == 1


def test_timeout_is_retryable(lake: CandleLake, btc_1d: pl.DataFrame) -> None:
    slow = Fault(200, [], delay_s=1.5)  # longer than the client timeout below
    with BinanceLoopback({("BTCUSDT", "1d"): btc_1d}, faults={1: slow}) as server:
        exchange = make_exchange("binance", timeout_s=0.5, api_url=server.url)
        ing = CandleIngestor(exchange, lake, retry=FAST, page_limit=1000, sleep=lambda s: None, rng=random.Random(1))
        result = ing.ingest("BTC/USDT", "1d", since=int(btc_1d["ts"][0]))
    assert result.added == btc_1d.height
