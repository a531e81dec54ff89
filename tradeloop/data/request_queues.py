"""One request queue per venue and account in a process, honouring ccxt's rate limiter.

Every ccxt async client holds its own limiter (``Throttler``: a leaky bucket refilled at the
venue's ``rateLimit``), so two clients of one account in one process (the engine's candle
feed and its broker; the market-data service's feed, its quotes and its health monitor)
would together send up to twice what the venue allows, and be answered 429 or banned.
:class:`RequestQueues` gives every async client of one venue and account the same queue:
their REST requests wait their turn in one bucket, at the rate ccxt knows for the venue, in
the order they were made. Clients are attached by ``tradeloop.data.exchanges.make_exchange``
(the account: :func:`account_of` its credentials), so nothing else has to know.

Rules:

1. The queue is per ``(venue, account)``: ``account`` is ``"public"`` for a client without
   keys and ``"key-<digest>"`` (a short SHA-256 of the API key, never the key) for one with.
   Several read-only keys (``TRADELOOP_MARKET_DATA_KEYS``) are several accounts, so several
   queues: that is what they are for, on venues that limit public requests per key.
2. A ccxt limiter belongs to one event loop: the queue is per loop too (a process runs one
   loop per ``asyncio.run``; a loop that ends takes its limiters with it).
3. The bucket is the first client's (``tokenBucket``: ccxt's figures for the venue); clients
   of one venue share ccxt's figures, so which one comes first does not matter.
4. Synchronous clients (``ccxt``, used by one-shot commands) keep ccxt's own per-client
   limiter.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
import weakref
from collections import Counter
from typing import Any

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
        self._queues: dict[tuple[str, str], weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Throttler]] = {}
        self._buckets: dict[tuple[str, str], dict[str, Any]] = {}
        self.requests: Counter[tuple[str, str]] = Counter()  # requests let through, per (venue, account)

    def attach(self, exchange: Any, *, account: str) -> Any:
        """Route ``exchange``'s rate limiting through the queue of its venue and ``account``;
        returns ``exchange``. A synchronous client is left as it is (rule 4)."""
        if not asyncio.iscoroutinefunction(getattr(exchange, "throttle", None)):
            return exchange
        key = (str(exchange.id), account)
        with self._lock:
            self._buckets.setdefault(key, dict(exchange.tokenBucket or {}))  # rule 3

        async def throttle(cost: float | None = None) -> None:
            await self._throttler(key)(cost)
            self.requests[key] += 1

        exchange.throttle = throttle
        return exchange

    def depth(self, venue: str, account: str) -> int:
        """Requests of ``venue`` and ``account`` waiting their turn now, over every loop."""
        with self._lock:
            return sum(len(t.queue) for t in self._queues.get((venue, account), {}).values())

    def _throttler(self, key: tuple[str, str]) -> Throttler:
        loop = asyncio.get_running_loop()
        with self._lock:
            per_loop = self._queues.setdefault(key, weakref.WeakKeyDictionary())
            throttler = per_loop.get(loop)
            if throttler is None:  # rule 2
                throttler = per_loop[loop] = Throttler(dict(self._buckets[key]), loop)
            return throttler


_QUEUES = RequestQueues()


def request_queues() -> RequestQueues:
    """The process-wide queues every client built by ``make_exchange`` is attached to."""
    return _QUEUES
