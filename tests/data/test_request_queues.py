"""One request queue per venue and account (``tradeloop.data.request_queues``): two ccxt
clients of one account in one process wait in one rate limiter at the venue's rate, where
each alone would go at that rate; clients of two accounts (read-only keys) each have their
own; a feed's REST candle reads go to the read-only keys' clients in turn
(``tradeloop.data.read_keys``), and ``TRADELOOP_MARKET_DATA_KEYS`` is parsed, refused when
malformed without echoing it, and kept out of the logs. Against the loopback Binance (real
ccxt over HTTP)."""

from __future__ import annotations

import asyncio
import time

import polars as pl
import pytest
from exchange_server import BinanceLoopback

from live.feeds.ccxt_feed import CcxtFeed, CcxtFeedConfig
from tradeloop.data import CandleLake
from tradeloop.data.exchanges import make_exchange
from tradeloop.data.read_keys import RoundRobinReads, market_data_reads
from tradeloop.data.request_queues import PUBLIC, RequestQueues, account_of
from tradeloop.errors import ConfigError
from tradeloop.redaction import redact
from tradeloop.settings import Settings, register_settings_secrets

KEYS = "ro-key-one-5d1f:ro-secret-one-93ac,ro-key-two-77b0:ro-secret-two-1e42"
T0 = 1_700_000_040_000 - 1_700_000_040_000 % 60_000
N = 10  # requests per client


@pytest.fixture
def rest():
    with BinanceLoopback(candles={}) as server:
        yield server


async def _burst(clients: list, n: int) -> float:
    """Seconds for ``n`` ``fetch_time`` calls from each client at once; closes the clients."""
    try:
        started = time.perf_counter()
        await asyncio.gather(*(c.fetch_time() for c in clients for _ in range(n)))
        return time.perf_counter() - started
    finally:
        for c in clients:
            await c.close()


def _client(rest: BinanceLoopback, queues: RequestQueues, credentials: dict | None = None):
    return make_exchange("binance", timeout_s=5, api_url=rest.url, asynchronous=True, credentials=credentials,
                         allow_insecure_loopback=True, queues=queues)  # fmt: skip


def test_two_clients_of_one_account_wait_in_one_queue_at_the_venues_rate(rest: BinanceLoopback) -> None:
    queues = RequestQueues()
    asyncio.run(_burst([_client(rest, queues), _client(rest, queues)], N))
    assert queues.requests == {("binance", PUBLIC): 2 * N}  # make_exchange attached both to one queue
    assert queues.depth("binance", PUBLIC) == 0

    # a slow venue (ccxt's bucket at 200 ms per request), to see the queue at work: 2 x 4
    # requests at once need 7 refills in one queue, 3 in each client's own limiter
    slow = RequestQueues()
    clients = [_client(rest, RequestQueues()) for _ in range(2)]
    endpoint = clients[0].api["public"]["get"]["time"]  # ccxt's weight of fetch_time's request
    cost = clients[0].calculate_rate_limiter_cost(["public"], "GET", "time", {}, endpoint)
    for c in clients:
        c.tokenBucket = {**c.tokenBucket, "refillRate": cost / 200.0}  # tokens per ms
        slow.attach(c, account=PUBLIC)
    elapsed = asyncio.run(_burst(clients, 4))
    assert elapsed >= 7 * 0.2 * 0.9, elapsed
    assert slow.requests == {("binance", PUBLIC): 8}


def test_clients_of_two_accounts_each_have_their_own_queue(rest: BinanceLoopback) -> None:
    queues = RequestQueues()
    keys = [{"apiKey": "alpha-key", "secret": "s1"}, {"apiKey": "beta-key", "secret": "s2"}]
    asyncio.run(_burst([_client(rest, queues, keys[0]), _client(rest, queues, keys[1])], N))
    accounts = {account for _, account in queues.requests}
    assert accounts == {account_of(keys[0]), account_of(keys[1])} and len(accounts) == 2
    assert all(n == N for n in queues.requests.values())
    assert not any("alpha" in a or "beta" in a for a in accounts)  # the account is a digest, never the key
    assert account_of(None) == account_of({"apiKey": ""}) == PUBLIC


def test_a_feeds_rest_reads_go_to_each_read_only_key_in_turn(rest: BinanceLoopback, tmp_path) -> None:
    candles = [[T0 + i * 60_000, 100.0 + i, 101.0 + i, 99.0 + i, 100.5 + i, 5.0] for i in range(4)]
    rest.candles[("BTCUSDT", "1m")] = pl.DataFrame(
        candles, schema=["ts", "open", "high", "low", "close", "volume"], orient="row"
    )
    settings = Settings(_env_file=None, TRADELOOP_MARKET_DATA_KEYS=KEYS, TRADELOOP_ALLOW_INSECURE_LOOPBACK=True)
    reads = market_data_reads("binance", settings, api_url=rest.url)
    assert isinstance(reads, RoundRobinReads) and len(reads.clients) == 2
    feed = CcxtFeed(
        make_exchange("binance", timeout_s=5, api_url=rest.url, websocket=True),
        lake=CandleLake(tmp_path),
        symbols=["BTC-USDT"],
        timeframe="1m",
        config=CcxtFeedConfig(use_websocket=False, poll_s=0.05, settle_s=0.0, lake_flush_s=None),
        reads=reads,
    )

    async def scenario() -> list[int]:
        out: list[int] = []
        try:
            async with asyncio.timeout(20):
                async for batch in feed.batches():
                    out.append(batch.ts)
                    if len(out) == 3:
                        break
        finally:
            await feed.close()
        return out

    assert asyncio.run(scenario()) == [T0 + i * 60_000 for i in range(3)]
    assert min(reads.used) >= 1 and max(reads.used) - min(reads.used) <= 1  # in turn
    assert all(c.session is None or c.session.closed for c in reads.clients)  # closed with the feed
    assert Settings(_env_file=None).market_data_credentials() == []
    assert market_data_reads("binance", Settings(_env_file=None)) is None


@pytest.mark.parametrize("bad", ["only-a-key", "k:s,", "k:s,:s2", "k:s:p:extra"])
def test_a_malformed_key_list_is_refused_by_position_without_echoing_it(bad: str) -> None:
    settings = Settings(
        _env_file=None, TRADELOOP_MARKET_DATA_KEYS=bad
    )  # a secret: refused where it is read, not echoed by pydantic
    with pytest.raises(ConfigError, match=r"TRADELOOP_MARKET_DATA_KEYS: entry \d is not KEY:SECRET") as refused:
        settings.market_data_credentials()
    assert bad not in str(refused.value) and "KEY:SECRET[:PASSWORD] separated by commas" in str(refused.value)


def test_the_read_only_keys_never_reach_a_log() -> None:
    register_settings_secrets(Settings(_env_file=None, TRADELOOP_MARKET_DATA_KEYS=KEYS))
    line = redact("polling with ro-key-one-5d1f, signed by ro-secret-two-1e42")
    assert "ro-key-one-5d1f" not in line and "ro-secret-two-1e42" not in line and "polling with" in line
