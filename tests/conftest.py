"""Shared fixtures: a temporary lake, the bundled sample, the loopback Binance server."""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import polars as pl
import pytest

sys.path.insert(0, str(Path(__file__).parent))  # for tests/exchange_server.py

from tradeloop.data import CandleLake

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data" / "sample"


@pytest.fixture
def lake(tmp_path: Path) -> CandleLake:
    return CandleLake(tmp_path / "lake", quarantine_root=tmp_path / "quarantine")


def sample(name: str) -> pl.DataFrame:
    return pl.read_parquet(SAMPLE / f"{name}.parquet")


@pytest.fixture(scope="session")
def btc_1d() -> pl.DataFrame:
    return sample("binance__BTC-USDT__1d")


@pytest.fixture(scope="session")
def btc_4h() -> pl.DataFrame:
    return sample("coinbase__BTC-USD__4h")


@pytest.fixture(scope="session")
def eth_4h() -> pl.DataFrame:
    return sample("coinbase__ETH-USD__4h")


@pytest.fixture(scope="session")
def btc_1h() -> pl.DataFrame:
    return sample("coinbase__BTC-USD__1h")


# ---------------------------------------------------------------- real servers (never skipped)
PG_ADMIN_URL = os.environ.get("TRADELOOP_TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("TRADELOOP_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@contextmanager
def throwaway_database(prefix: str = "tradeloop_test") -> Iterator[str]:
    """A new database on the real PostgreSQL server (its URL), dropped on exit."""
    import sqlalchemy as sa

    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield str(sa.make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False))
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A throwaway database on the real PostgreSQL server, dropped after the session."""
    with throwaway_database() as url:
        yield url


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """A key prefix of this test's own on the real Redis server (``REDIS_URL``); its keys are
    deleted afterwards."""
    import redis

    prefix = f"tradeloop-test-{uuid.uuid4().hex[:8]}"
    client = redis.Redis.from_url(REDIS_URL)
    client.ping()
    yield prefix
    for key in client.scan_iter(f"{prefix}:*"):
        client.delete(key)
    client.close()
