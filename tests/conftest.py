"""Shared fixtures: a temporary lake, the bundled sample, the loopback Binance server."""

from __future__ import annotations

import sys
from pathlib import Path

import polars as pl
import pytest

sys.path.insert(0, str(Path(__file__).parent))  # for tests/exchange_server.py

from tradeloop.data import CandleLake  # noqa: E402

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
