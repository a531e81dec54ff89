"""A venue's REST candle reads spread over several clients: the market data's read-only keys
(``TRADELOOP_MARKET_DATA_KEYS``). Each request goes to the next client in turn, and waits in
that client's own account queue (``tradeloop.data.request_queues``), so N keys give N times
the rate a venue that limits public requests per key allows. On a venue that limits by
address (Binance's request weight), extra keys add nothing: leave the setting empty there."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tradeloop.settings import Settings


class RoundRobinReads:
    """``fetch_ohlcv`` and ``fetch_time`` over ``clients`` in turn (module docstring)."""

    def __init__(self, clients: Sequence[Any]):
        if not clients:
            raise ValueError("RoundRobinReads needs at least one client")
        self.clients = list(clients)
        self.id = self.clients[0].id
        self.has = self.clients[0].has
        self.used = [0] * len(self.clients)  # requests sent through each client
        self._turn = itertools.cycle(range(len(self.clients)))

    def _next(self) -> Any:
        i = next(self._turn)
        self.used[i] += 1
        return self.clients[i]

    async def fetch_ohlcv(self, *args: Any, **kwargs: Any) -> list[list]:
        return await self._next().fetch_ohlcv(*args, **kwargs)

    async def fetch_time(self, *args: Any, **kwargs: Any) -> int | None:
        return await self._next().fetch_time(*args, **kwargs)

    async def close(self) -> None:
        for client in self.clients:
            with contextlib.suppress(Exception):
                await client.close()


def market_data_reads(exchange_id: str, settings: Settings, *, api_url: str | None = None) -> RoundRobinReads | None:
    """Async clients of ``exchange_id``, one per read-only key of ``TRADELOOP_MARKET_DATA_KEYS``
    (``None`` when it is unset), for a feed's REST candle reads."""
    from tradeloop.data.exchanges import make_exchange  # ccxt is slow to import: on use

    keys = settings.market_data_credentials()
    if not keys:
        return None
    return RoundRobinReads([
        make_exchange(exchange_id, timeout_s=settings.http_timeout_s, api_url=api_url, credentials=key,
                      asynchronous=True, allow_insecure_loopback=settings.allow_insecure_loopback)
        for key in keys
    ])  # fmt: skip
