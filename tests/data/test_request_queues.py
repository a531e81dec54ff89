"""One request queue per venue and account (``tradeloop.data.request_queues``): two ccxt
clients of one account in one process wait in one rate limiter at the venue's rate, where
each alone would go at that rate; clients of two accounts each have their own, named by a
digest of the key; a closed event loop's limiters are let go. Against the loopback Binance
(real ccxt over HTTP)."""

from __future__ import annotations

import asyncio
import time

import pytest
from exchange_server import BinanceLoopback

from tradeloop.data.exchanges import make_exchange
from tradeloop.data.request_queues import PUBLIC, RequestQueues, account_of

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


def test_one_venue_at_two_hosts_has_two_queues(rest: BinanceLoopback) -> None:
    """Two Binance-protocol servers (a proxy, a test venue): each host's limit is its own."""
    with BinanceLoopback(candles={}) as other:
        slow = RequestQueues()
        clients = [_client(rest, RequestQueues()), _client(other, RequestQueues())]
        endpoint = clients[0].api["public"]["get"]["time"]
        cost = clients[0].calculate_rate_limiter_cost(["public"], "GET", "time", {}, endpoint)
        for c in clients:
            c.tokenBucket = {**c.tokenBucket, "refillRate": cost / 200.0}
            slow.attach(c, account=PUBLIC)
        elapsed = asyncio.run(_burst(clients, 4))
    assert elapsed < 7 * 0.2 * 0.9, elapsed  # 3 refills each, side by side: not 7 in one queue
    assert slow.requests == {("binance", PUBLIC): 8}


def test_a_closed_loops_limiters_are_let_go(rest: BinanceLoopback) -> None:
    queues = RequestQueues()
    for _ in range(4):  # four asyncio.run: four loops, each closed at its end
        asyncio.run(_burst([_client(rest, queues)], 2))
    assert queues.loops() == 1  # only the last one, dropped at the next lookup

    async def one_more() -> int:
        await _burst([_client(rest, queues)], 1)
        return queues.loops()

    assert asyncio.run(one_more()) == 1 and queues.requests == {("binance", PUBLIC): 9}
