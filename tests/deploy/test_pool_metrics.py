"""The database pool's figures at the scrape (``tradeloop.observability.pool``): a real
PostgreSQL pool lending connections and opening overflow ones, the ops store's pool reported
as ``database="ops"``, and a pool without a queue (or collected) reporting nothing."""

from __future__ import annotations

import gc

import sqlalchemy as sa
from prometheus_client import generate_latest
from prometheus_client.core import REGISTRY
from sqlalchemy.pool import NullPool

from tests.conftest import PG_ADMIN_URL
from tradeloop.observability.pool import watch_pool
from tradeloop.ops import OpsStore


def figures(database: str) -> dict[str, float]:
    out = {}
    for family in REGISTRY.collect():
        if family.name.startswith("tradeloop_db_pool_"):
            for sample in family.samples:
                if sample.labels == {"database": database}:
                    out[family.name.removeprefix("tradeloop_db_pool_")] = sample.value
    return out


def test_a_postgresql_pool_reports_what_it_lends_and_its_overflow() -> None:
    engine = sa.create_engine(PG_ADMIN_URL, pool_size=2, max_overflow=3)
    watch_pool("test-pg", engine)
    try:
        held = [engine.connect() for _ in range(3)]  # the pool's 2 and one overflow
        for conn in held:
            conn.execute(sa.text("select 1"))
        assert figures("test-pg") == {"size": 2, "checked_out": 3, "checked_in": 0, "overflow": 1, "limit": 5}
        for conn in held:
            conn.close()
        after = figures("test-pg")  # the overflow connection is closed, the pool's 2 wait idle
        assert after["checked_out"] == 0 and after["checked_in"] == 2 and after["overflow"] == 0
    finally:
        engine.dispose()


def test_the_ops_store_reports_its_pool_and_a_queueless_or_collected_pool_reports_nothing(tmp_path) -> None:
    store = OpsStore.open(f"sqlite:///{tmp_path / 'ops.db'}")
    with store.engine.connect():
        assert figures("ops")["checked_out"] == 1
    assert 'tradeloop_db_pool_size{database="ops"}' in generate_latest(REGISTRY).decode()
    watch_pool("test-null", sa.create_engine(f"sqlite:///{tmp_path / 'other.db'}", poolclass=NullPool))
    assert figures("test-null") == {}
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'gone.db'}")
    watch_pool("test-gone", engine)
    assert figures("test-gone")["size"] == 5
    engine.dispose()
    del engine
    gc.collect()
    assert figures("test-gone") == {}
    store.close()
