"""Waiting out a lost operational database.

Rules (the engine's side is in ``live.engine``): a connection error anywhere in a bar means its
transaction did not commit. :meth:`DatabaseWatch.wait` then pings the database with
exponential backoff and full jitter (``base_s`` .. ``cap_s``) until it answers, forever
unless ``stop`` is set; the engine resumes as a restart would. The outage (seconds, pings,
error) is kept until the engine writes it to the audit log, which needs the database back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time

from sqlalchemy import text

from tradeloop.ops import OpsStore
from tradeloop.ops.database import is_connection_error
from tradeloop.retry import backoff_delay

log = logging.getLogger(__name__)


class DatabaseWatch:
    def __init__(self, store: OpsStore, *, base_s: float, cap_s: float) -> None:
        self.store, self.base_s, self.cap_s = store, base_s, cap_s
        self.failures = 0  # failed pings, all outages together
        self.outage: dict | None = None  # the last outage, until it is in the audit log

    async def wait(self, error: BaseException, *, stop: asyncio.Event | None, session: str) -> None:
        """Ping until the database answers (``outage`` is then set) or ``stop`` is set."""
        log.warning(
            "session %s: operational database lost (%s); no order goes out until it is back",
            session,
            str(error).strip().splitlines()[0][:200],
        )
        began, rng = time.monotonic(), random.Random()
        for attempt in range(1, 1_000_000_000):
            wait = backoff_delay(attempt, base=self.base_s, cap=self.cap_s, rng=rng)
            if stop is not None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), wait)
                    return
            else:
                await asyncio.sleep(wait)
            try:
                with self.store.engine.connect() as conn:
                    conn.execute(text("SELECT 1"))
            except Exception as exc:
                if not is_connection_error(exc):
                    raise
                self.failures += 1
                continue
            seconds = round(time.monotonic() - began, 1)
            log.warning(
                "session %s: operational database back after %.1fs; resuming after the last committed bar",
                session,
                seconds,
            )
            self.outage = {"seconds": seconds, "pings": attempt, "error": str(error).strip()[:200]}
            return

    def take_outage(self) -> dict | None:
        """The outage to audit (once)."""
        outage, self.outage = self.outage, None
        return outage
