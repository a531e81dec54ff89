"""One request queue per venue and account in a process, honouring ccxt's rate limiter.

Every ccxt async client holds its own limiter (``Throttler``: a leaky bucket refilled at the
venue's ``rateLimit``), so several clients of one account in one process (the market-data
service's feeds, its quotes and the venue monitor on the public side; a broker's client and
a reconciliation's on an account's keys) would together send a multiple of what the venue
allows, and be answered 429 or banned. :class:`RequestQueues` gives every async client of one
venue and account the same queue: their REST requests wait their turn in one bucket, at the
rate ccxt knows for the venue, in the order they were made. Clients are attached by
``tradeloop.data.exchanges.make_exchange`` (the account: :func:`account_of` its
credentials), so nothing else has to know.

Rules:

1. The queue is per ``(venue, account)``: ``account`` is ``"public"`` for a client without
   keys and ``"key-<digest>"`` (a short SHA-256 of the API key, never the key) for one with.
   A venue is its ccxt id at one REST host: a client pointed elsewhere (``api_url``: a
   proxy, a test exchange) counts against that host's limit, not the venue's.
   An engine's unkeyed candle feed and its keyed broker are two accounts, so two queues:
   venues count orders per account, and a venue that limits by address (Binance's request
   weight) sees both within its budget only while each stays under half of it.
2. A ccxt limiter belongs to one event loop: the queue is per loop too (a process runs one
   loop per ``asyncio.run``); the limiters of a loop that has closed are dropped at the next
   lookup.
3. The bucket is the first client's (``tokenBucket``: ccxt's figures for the venue); clients
   of one venue share ccxt's figures, so which one comes first does not matter.
4. Synchronous clients (``ccxt``, used by one-shot commands) keep ccxt's own per-client
   limiter.

Several API keys for read-only market data do not raise a venue's limit through ccxt: ccxt
sends the key with private endpoints only, and candles, tickers and the server time are
public, so every key's requests would arrive anonymous from one address. That mitigation is
not built.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections import Counter
from typing import Any
from urllib.parse import urlsplit

from ccxt.async_support.base.throttler import Throttler

PUBLIC = "public"


def account_of(credentials: dict[str, str] | None) -> str:
    """The account a client's requests count against (rule 1): never the key itself."""
    key = (credentials or {}).get("apiKey") or ""
    return f"key-{hashlib.sha256(key.encode()).hexdigest()[:12]}" if key else PUBLIC


class RequestQueues:
    """The process's request queues (module rules); :func:`request_queues` is the default."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # (venue, account) -> id(loop) -> (the loop, its limiter): a limiter holds its loop, so a
        # weak mapping would never let go; closed loops are dropped at lookup instead (rule 2)
        # keyed (venue, account, REST host): rule 1
        self._queues: dict[tuple[str, str, str], dict[int, tuple[asyncio.AbstractEventLoop, Throttler]]] = {}
        self._buckets: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.requests: Counter[tuple[str, str]] = Counter()  # requests let through, per (venue, account)

    def attach(self, exchange: Any, *, account: str) -> Any:
        """Route ``exchange``'s rate limiting through the queue of its venue and ``account``;
        returns ``exchange``. A synchronous client is left as it is (rule 4)."""
        if not asyncio.iscoroutinefunction(getattr(exchange, "throttle", None)):
            return exchange
        venue = str(exchange.id)
        key = (venue, account, _rest_host(exchange))
        with self._lock:
            self._buckets.setdefault(key, dict(exchange.tokenBucket or {}))  # rule 3

        async def throttle(cost: float | None = None) -> None:
            await self._throttler(key)(cost)
            self.requests[venue, account] += 1

        exchange.throttle = throttle
        return exchange

    def depth(self, venue: str, account: str) -> int:
        """Requests of ``venue`` and ``account`` waiting their turn now, over every loop."""
        with self._lock:
            return sum(
                len(t.queue)
                for (v, a, _), per_loop in self._queues.items()
                if (v, a) == (venue, account)
                for _, t in per_loop.values()
            )

    def loops(self) -> int:
        """Event loops holding limiters now (closed ones are dropped at the next lookup)."""
        with self._lock:
            return len({id(loop) for per_loop in self._queues.values() for loop, _ in per_loop.values()})

    def _throttler(self, key: tuple[str, str, str]) -> Throttler:
        loop = asyncio.get_running_loop()
        with self._lock:
            per_loop = self._queues.setdefault(key, {})
            held = per_loop.get(id(loop))
            if held is None or held[0] is not loop:  # a new loop: closed ones' limiters go (rule 2)
                for queues in self._queues.values():
                    for ident in [i for i, (old, _) in queues.items() if old.is_closed()]:
                        del queues[ident]
                held = per_loop[id(loop)] = (loop, Throttler(dict(self._buckets[key]), loop))
            return held[1]


def _rest_host(exchange: Any) -> str:
    """The host of the client's public REST URL (``urls['api']``: a string, or a nested dict
    whose ``public`` or ``rest`` entry, else its first, is taken)."""
    api: Any = exchange.urls.get("api")
    while isinstance(api, dict):
        named = api.get("public", api.get("rest"))
        api = named if named is not None else next((v for v in api.values() if isinstance(v, (str, dict))), "")
    return urlsplit(api).netloc if isinstance(api, str) else ""


_QUEUES = RequestQueues()


def request_queues() -> RequestQueues:
    """The process-wide queues every client built by ``make_exchange`` is attached to."""
    return _QUEUES
