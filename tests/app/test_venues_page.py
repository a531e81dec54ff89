"""The dashboard's Venues page shows each venue's health and the arbitrage opportunities the
live side wrote to the operational database, and explains when there are none."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.app.conftest import dashboard_reads
from tests.app.test_dashboard import page, table
from tests.arbitrage.test_scanner import top
from tradeloop.arbitrage import ArbitrageConfig, ArbitrageScanner
from tradeloop.observability.venues import VenueHealth
from tradeloop.ops import OpsStore
from tradeloop.ops.market_store import MarketStore


@pytest.fixture
def own_env(dashboard_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A copy of the dashboard's data folder: these tests write to its database."""
    root = shutil.copytree(dashboard_root, tmp_path / "root")
    with dashboard_reads(root, monkeypatch):
        yield root


def test_venues_page_explains_when_nothing_was_reported(dashboard_env: Path) -> None:
    at = page("venues")
    assert at.title[0].value == "Venues"
    infos = [i.value for i in at.info]
    assert any("No venue has reported its health yet" in i for i in infos)
    assert any("No arbitrage opportunity" in i for i in infos)


def test_venues_page_shows_health_and_opportunities(own_env: Path) -> None:
    store = OpsStore.open(f"sqlite:///{own_env / 'tradeloop.db'}")
    market = MarketStore(store)
    health = VenueHealth()
    health.record_call("binance", endpoint="GET klines", seconds=0.05)
    health.record_status("kraken", "maintenance")
    market.save_health(health.snapshots())
    scanner = ArbitrageScanner(ArbitrageConfig(taker_fees={"a": 0.0, "b": 0.0}))
    scanner.update(top("a", 1_000, bid=99, ask=100))
    market.record(*scanner.update(top("b", 1_000, bid=101, ask=102)))
    market.record(*scanner.update(top("b", 3_500, bid=99, ask=100)))
    store.close()
    at = page("venues")
    scores = {m.label: m.value for m in at.metric}
    assert scores["binance"] == "1.00" and scores["kraken"] == "0.00" and scores["Open now"] == "0"
    venues = table(at, "venue")
    assert venues["venue"].tolist() == ["binance", "kraken"] and venues["status"].tolist()[1] == "maintenance"
    opportunities = table(at, "buy_venue")
    assert opportunities[["buy_venue", "sell_venue"]].values.tolist() == [["a", "b"]]
    assert opportunities["duration_s"].tolist() == [2.5] and opportunities["net_bps"].tolist() == [100.0]
