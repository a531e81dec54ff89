"""The venue monitor: probes each venue's clock and status, and writes every venue's health
snapshot to the operational database, where the API (``GET /venues/health``) and the
dashboard read it (they never reach into this process).

Rules:

1. **Probes**, every ``probe_s``, per venue: ``fetch_time`` gives the clock skew, the venue's
   server time minus the midpoint of our send and its reply; ``fetch_status`` gives the
   venue's own status where ccxt has it (``exchange.has['fetchStatus']``). A probe that fails
   is a failed call in the client's instrumentation (it lowers availability); the figure it
   would have measured keeps its last value.
2. **Snapshots** of every venue the process's :class:`VenueHealth` has seen (the feeds' and
   brokers' clients report to the same one) are written after each round of probes, one row
   per venue (``tradeloop.ops.market_store`` rule 1).
3. A router or failover in this process asks ``health.score(venue)`` directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping

import ccxt
import ccxt.async_support
from pydantic import BaseModel, ConfigDict, Field

from tradeloop.observability.venues import VenueHealth, venue_health
from tradeloop.ops.market_store import MarketStore

log = logging.getLogger(__name__)


class MonitorConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    probe_s: float = Field(default=30.0, gt=0, description="seconds between rounds of probes and snapshots")


async def probe_venue(exchange: ccxt.async_support.Exchange, health: VenueHealth) -> None:
    """Measure ``exchange``'s clock skew and status into ``health`` (rule 1)."""
    venue = exchange.id
    try:
        sent = time.time()
        server_ms = await exchange.fetch_time()
        received = time.time()
        if server_ms is not None:
            health.record_clock_skew(venue, server_ms / 1000 - (sent + received) / 2)
    except ccxt.BaseError as exc:
        log.info("%s: fetch_time failed (%s: %s)", venue, type(exc).__name__, exc)
    if not exchange.has.get("fetchStatus"):
        return
    try:
        status = await exchange.fetch_status()
        health.record_status(venue, status.get("status"))
    except ccxt.BaseError as exc:
        log.info("%s: fetch_status failed (%s: %s)", venue, type(exc).__name__, exc)


class VenueMonitor:
    """Probes ``exchanges`` (venue -> async ccxt client) and snapshots ``health`` (module rules)."""

    def __init__(
        self,
        exchanges: Mapping[str, ccxt.async_support.Exchange],
        *,
        market: MarketStore | None,
        health: VenueHealth | None = None,
        config: MonitorConfig | None = None,
    ):
        self.exchanges, self.market = dict(exchanges), market
        self.health = health or venue_health()
        self.config = config or MonitorConfig()

    async def round(self) -> int:
        """One round: every venue probed, then every snapshot written; the rows written."""
        await asyncio.gather(*(probe_venue(e, self.health) for e in self.exchanges.values()))
        if self.market is None:
            return 0
        return await asyncio.to_thread(self.market.save_health, self.health.snapshots())

    async def run(self, stop: asyncio.Event) -> None:
        """Rounds every ``probe_s`` until ``stop`` is set."""
        while not stop.is_set():
            try:
                await self.round()
            except Exception:
                log.exception("venue monitor: a round failed; trying again in %.0f s", self.config.probe_s)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.config.probe_s)
