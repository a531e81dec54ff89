"""The dashboard's pages render real data, with no exception (streamlit's AppTest)."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

DASHBOARD = str(Path(__file__).resolve().parents[2] / "app" / "dashboard.py")


def page(name: str) -> AppTest:
    at = AppTest.from_file(DASHBOARD, default_timeout=60)
    at.run()
    if name != "overview":
        at.switch_page(f"app_pages/{name}.py")
        at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_overview_shows_the_session(dashboard_env) -> None:
    at = page("overview")
    assert at.title[0].value == "Live sessions"
    assert at.selectbox[0].value == "paper-demo"
    labels = {m.label: m.value for m in at.metric}
    assert set(labels) == {"Equity", "PnL", "Cash", "Status"} and labels["Status"] == "finished"  # replayed to the end
    assert at.dataframe[0].value["session"].tolist() == ["paper-demo"]


def test_performance_puts_live_and_backtest_side_by_side(dashboard_env) -> None:
    at = page("performance")
    assert at.multiselect[0].value == ["research backtest", "live: paper-demo"]
    metrics = at.dataframe[0].value
    assert metrics["run"].tolist() == ["research backtest", "live: paper-demo"]
    assert metrics["trades"].iloc[0] > 0


def test_champion_shows_lineage(dashboard_env) -> None:
    at = page("champion")
    assert at.header[0].value == "sma_cross"
    assert any(m.label == "Artifact" for m in at.metric)


def test_data_health_lists_every_series(dashboard_env) -> None:
    at = page("data_health")
    health = at.dataframe[0].value
    assert len(health) == 7 and {"coverage", "gaps", "missing"} <= set(health.columns)


def test_empty_data_folder_explains_what_to_do(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tradeloop.settings import get_settings

    monkeypatch.setenv("TRADELOOP_DATA_DIR", str(tmp_path))
    get_settings.cache_clear()
    try:
        for name in ("overview", "performance", "champion", "data_health"):
            at = page(name)
            assert at.info, name
        assert not (tmp_path / "tradeloop.db").exists()  # a reader never creates the database
    finally:
        get_settings.cache_clear()
