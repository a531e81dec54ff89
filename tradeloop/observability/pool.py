"""The SQLAlchemy connection pools of a process, read at each scrape.

``tradeloop_db_pool_size{database}`` (connections kept open), ``tradeloop_db_pool_checked_out``
(lent to a transaction now), ``tradeloop_db_pool_checked_in`` (idle in the pool),
``tradeloop_db_pool_overflow`` (opened beyond the size, 0 until the pool is full) and
``tradeloop_db_pool_limit`` (size + max overflow: a checkout beyond it waits ``pool_timeout``).

Rules:

1. Only a pool that queues (SQLAlchemy's ``QueuePool``, the default for PostgreSQL and for a
   SQLite file) has these figures; a ``NullPool`` or ``StaticPool`` reports no series.
2. The pool is held weakly: a disposed and collected engine's series vanish at the next
   scrape, and watching never keeps an engine alive.
3. One series per ``database`` name per process: watching a name again reports the newer
   engine's pool (an ``OpsStore`` opened again replaces the old one).
"""

from __future__ import annotations

import weakref

from sqlalchemy import Engine
from sqlalchemy.pool import QueuePool

from tradeloop.observability.sampled import Sampled

LABELS = ("database",)
POOL_SIZE = Sampled("tradeloop_db_pool_size", "Connections a database pool keeps open", LABELS)
POOL_CHECKED_OUT = Sampled("tradeloop_db_pool_checked_out", "Pooled connections lent out now", LABELS)
POOL_CHECKED_IN = Sampled("tradeloop_db_pool_checked_in", "Pooled connections idle now", LABELS)
POOL_OVERFLOW = Sampled("tradeloop_db_pool_overflow", "Connections open beyond the pool's size", LABELS)
POOL_LIMIT = Sampled("tradeloop_db_pool_limit", "Most connections the pool lends at once (size + max overflow)", LABELS)
POOL_FAMILIES = (POOL_SIZE, POOL_CHECKED_OUT, POOL_CHECKED_IN, POOL_OVERFLOW, POOL_LIMIT)


def watch_pool(database: str, engine: Engine) -> None:
    """Report ``engine``'s pool under ``database`` at each scrape (module rules)."""
    pool = engine.pool
    if not isinstance(pool, QueuePool):
        for family in POOL_FAMILIES:
            family.forget(database)
        return
    ref = weakref.ref(pool)

    def figure(read):  # one family's source: no row once the pool is gone
        def rows() -> list[tuple[tuple[str, ...], float]]:
            live = ref()
            return [] if live is None else [((database,), float(read(live)))]

        return rows

    max_overflow = pool._max_overflow  # QueuePool has no public accessor for it
    POOL_SIZE.track(database, figure(lambda p: p.size()))
    POOL_CHECKED_OUT.track(database, figure(lambda p: p.checkedout()))
    POOL_CHECKED_IN.track(database, figure(lambda p: p.checkedin()))
    POOL_OVERFLOW.track(database, figure(lambda p: max(p.overflow(), 0)))
    if max_overflow >= 0:  # -1: no limit
        POOL_LIMIT.track(database, figure(lambda p: p.size() + max_overflow))
    else:
        POOL_LIMIT.forget(database)
