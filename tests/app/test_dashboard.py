"""The dashboard's pages render real data with no exception, and every page has an empty
state: no data folder, a selector cleared (streamlit's AppTest)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.app.conftest import dashboard_reads
from tradeloop.backtest import BacktestConfig
from tradeloop.ops import EquityPoint, OpsStore
from tradeloop.registry import ModelRegistry
from tradeloop.settings import get_settings

DASHBOARD = str(Path(__file__).resolve().parents[2] / "app" / "dashboard.py")


def page(name: str) -> AppTest:
    at = AppTest.from_file(DASHBOARD, default_timeout=60)
    at.run()
    if name != "overview":
        at.switch_page(f"app_pages/{name}.py")
        at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def table(at: AppTest, column: str):
    """The first dataframe on the page with a column ``column`` (as pandas)."""
    return next(d.value for d in at.dataframe if column in d.value.columns)


def charts(at: AppTest) -> list[dict]:
    """The plotly figures on the page, as their JSON specs."""
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def test_overview_shows_the_session(dashboard_env: Path) -> None:
    at = page("overview")
    assert at.title[0].value == "Live sessions"
    assert at.selectbox(key="session").value == "paper-demo"
    labels = {m.label: m.value for m in at.metric}
    assert set(labels) == {"Equity", "PnL", "Cash", "Status", "Decided by"}
    assert labels["Status"] == "finished" and labels["Decided by"] == "model"  # replayed to the end, by the champion
    assert table(at, "session")["session"].tolist() == ["paper-demo"]
    assert any("Last updated" in c.value for c in at.caption)
    store = OpsStore.open(f"sqlite:///{dashboard_env / 'tradeloop.db'}")
    session = store.session("paper-demo")
    last = store.frame(EquityPoint, session.id).sort("ts")["equity"][-1]
    store.close()
    assert labels["Equity"] == f"{last:,.2f}"
    [equity] = [c for c in charts(at) if c["layout"]["yaxis"].get("title", {}).get("text") == "equity"]
    assert equity["layout"]["yaxis"]["type"] == "linear"
    at.toggle(key="log-paper-demo").set_value(True).run()
    [equity] = [c for c in charts(at) if c["layout"]["yaxis"].get("title", {}).get("text") == "equity"]
    assert not at.exception and equity["layout"]["yaxis"]["type"] == "log"


def test_overview_with_the_symbol_cleared_explains(dashboard_env: Path) -> None:
    at = page("overview")
    symbol = at.segmented_control(key="symbol-paper-demo")
    assert symbol.value == "BTC-USD"
    symbol.set_value(None).run()
    assert not at.exception
    assert any("Pick a symbol to see its candles" in i.value for i in at.info)
    assert {m.label for m in at.metric} >= {"Equity", "Status"}  # the rest of the session still shows


def test_performance_puts_live_beside_its_backtest_on_equal_terms(dashboard_env: Path) -> None:
    at = page("performance")
    assert at.selectbox(key="perf-session").value == "paper-demo"
    assert at.multiselect[0].value == ["live: paper-demo", "backtest, same terms", "research backtest"]
    metrics = table(at, "metric").set_index("metric")
    live, same = metrics["live: paper-demo"], metrics["backtest, same terms"]
    # a replay fills as the backtest does (tests/live/test_parity.py): same bars, model and sizing
    assert live["total return"] == same["total return"] and live["max drawdown"] == same["max drawdown"]
    assert live["total return"].endswith("%") and int(live["trades"]) > int(live["of which open at the end"])
    assert metrics["research backtest"]["from (UTC)"] == live["from (UTC)"]  # the live period only
    terms = {m.value.split("**")[1]: m.value for m in at.markdown if m.value.startswith("- **")}
    assert "50% of equity per new position" in terms["live: paper-demo"]  # each run's terms stated
    assert "50% of equity per new position" in terms["backtest, same terms"]
    assert "sizing not recorded" in terms["research backtest"]  # research's metrics.json has no config
    at.toggle(key="perf-period").set_value(False).run()
    metrics = table(at, "metric").set_index("metric")
    assert metrics["research backtest"]["from (UTC)"] < live["from (UTC)"]  # its whole history now


def test_performance_with_a_selector_cleared_explains(dashboard_env: Path) -> None:
    at = page("performance")
    at.multiselect[0].set_value([]).run()
    assert not at.exception and any("Pick at least one run" in i.value for i in at.info)


def test_performance_without_a_session_shows_the_research_backtest(
    dashboard_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copytree(dashboard_env / "research", tmp_path / "research")
    stored = tmp_path / "research" / "backtest" / "metrics.json"  # a backtest that records its terms
    stored.write_text(
        json.dumps({**json.loads(stored.read_text()), "config": BacktestConfig(fee_rate=0.0005).model_dump()})
    )
    with dashboard_reads(tmp_path, monkeypatch):
        at = page("performance")
    assert at.selectbox(key="perf-session").value is None and at.multiselect[0].value == ["research backtest"]
    assert list(table(at, "metric").columns) == ["metric", "research backtest"]
    [terms] = [m.value for m in at.markdown if m.value.startswith("- **research backtest**")]
    assert "100% of equity per new position, shared cash, fee 0.05%/side" in terms and "capital 10,000" in terms


def test_champion_shows_a_card_and_the_gate_as_promoted(dashboard_env: Path) -> None:
    at = page("champion")
    assert at.header[0].value == "sma_cross"
    entry, model = ModelRegistry(dashboard_env / "registry").load("sma_cross")
    assert {m.label: m.value for m in at.metric}["Artifact"] == entry.artifact[:12]
    card = next(m.value for m in at.markdown if "**training window**" in m.value)
    assert f"**data hash**: {model.info['data_hash']}" in card
    assert "**universe**: exchange coinbase, timeframe 4h, 2 symbol(s): BTC-USD, ETH-USD" in card
    assert "**stale after**" in card and f"**run**: {entry.lineage.run_id}" in card
    assert " UTC (first .. last training event)" in card and ":00Z" not in card  # dates, not ISO stamps
    notebooks = next(m.value for m in at.markdown if "**Notebooks**" in m.value)
    lab = get_settings().lab_url.rstrip("/")  # JupyterLab serves the repository (jupyter/jupyter_lab_config.py)
    assert f"[source: notebooks/thresholds.py]({lab}/lab/tree/notebooks/thresholds.py)" in notebooks
    gate = table(at, "check")
    assert gate["check"].tolist() == [c["name"] for c in entry.lineage.gate]
    assert gate["result"].tolist() == ["PASS" if c["passed"] else "FAIL" for c in entry.lineage.gate]
    drawdown = next(c for c in entry.lineage.gate if c["name"] == "max_drawdown")
    row = gate[gate["check"] == "max_drawdown"].iloc[0]
    assert row["value"] == drawdown["shown"] and row["value"].endswith("%") and row["bar"] == ">= -35.0%"


def test_data_health_lists_every_series(dashboard_env: Path) -> None:
    at = page("data_health")
    health = table(at, "candles")
    assert len(health) == 7 and {"coverage", "gaps", "missing"} <= set(health.columns)
    assert health["coverage"].between(0, 100).all() and health["coverage"].max() == pytest.approx(100.0)  # in %
    gaps = table(at, "from")
    assert str(gaps["from"].dtype).startswith("datetime")  # dates, not epoch numbers
    at.multiselect(key="health-exchanges").set_value([]).run()
    assert not at.exception and any("No series matches" in i.value for i in at.info)


def test_empty_data_folder_explains_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with dashboard_reads(tmp_path, monkeypatch):
        for name in ("overview", "performance", "champion", "data_health"):
            at = page(name)
            assert at.info, name
    assert not (tmp_path / "tradeloop.db").exists()  # a reader never creates the database


def test_a_session_without_bars_has_an_empty_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = OpsStore.open(f"sqlite:///{tmp_path / 'tradeloop.db'}")
    store.create_session(
        name="fresh",
        strategy="sma_cross",
        exchange="coinbase",
        timeframe="4h",
        symbols=["BTC-USD"],
        mode="paper",
        init_cash=1000.0,
        config={"init_cash": 1000.0},
    )
    store.close()
    with dashboard_reads(tmp_path, monkeypatch):
        at = page("overview")
        assert {m.label: m.value for m in at.metric}["Status"] == "stale"  # stored running, no engine beats
        assert any("No bar processed yet" in i.value for i in at.info)
        at = page("performance")
        assert any("has not processed a bar yet" in c.value for c in at.caption)
        assert any("Pick a session with bars" in i.value for i in at.info)


def test_a_running_replay_that_caught_up_with_the_lake_says_it_waits_for_the_next_candle(
    dashboard_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "data"
    shutil.copytree(dashboard_root, root)  # the shared folder stays as the other tests expect it
    with dashboard_reads(root, monkeypatch):
        store = OpsStore.open(get_settings().effective_database_url)
        session = store.session("paper-demo")  # it replayed to the lake's newest candle
        store.set_status("paper-demo", "running")
        store.beat(session.id)  # an engine is alive and waiting
        store.close()
        at = page("overview")
        notices = [i.value for i in at.info if "caught up" in i.value]
        assert len(notices) == 1 and "waits for the next one" in notices[0]
        store = OpsStore.open(get_settings().effective_database_url)
        store.set_status("paper-demo", "paused")  # paused: the paused notice, not the caught-up one
        store.close()
        assert not [i.value for i in page("overview").info if "caught up" in i.value]
