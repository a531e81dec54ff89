"""The dashboard's pages, the API's session reads and ``tradeloop live sessions`` with a
paper-arbitrage session present (``live.arbitrage_paper``: its ``config`` is no
``BacktestConfig``): each shows it, labelled, with the realised PnL of its pairs, and no
exception."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.app.conftest import dashboard_reads
from tests.app.test_dashboard import page, table
from tests.live.test_arbitrage_paper import CLOSE, OPEN, run, service_of
from tradeloop.ops import OpsStore

PNL = (101 * 0.5 - 101 * 0.5 * 0.002) - (100 * 0.5 + 100 * 0.5 * 0.001)


def arbitrage_database(path: Path) -> None:
    """A paper-arbitrage session with one executed pair, beside a session of bars."""
    store = OpsStore.open(f"sqlite:///{path}")
    run(service_of(store), [*OPEN, CLOSE])
    store.create_session(name="fresh", strategy="sma_cross", exchange="coinbase", timeframe="4h",
                         symbols=["BTC-USD"], mode="paper", init_cash=1000.0, config={"init_cash": 1000.0})  # fmt: skip
    store.close()


def test_the_dashboard_shows_a_paper_arbitrage_session(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    arbitrage_database(tmp_path / "tradeloop.db")
    with dashboard_reads(tmp_path, monkeypatch):
        at = page("overview")
        assert at.selectbox(key="session").value == "arbitrage-paper"
        labels = {m.label: m.value for m in at.metric}
        assert labels["Equity"] == f"{20_000 + PNL:,.2f}" and labels["PnL"] == f"{PNL:,.2f}"
        assert labels["Cash"] == f"{20_000 + PNL:,.2f}"  # both venues' USDT: the fills moved it
        assert any("paper arbitrage: at most 1,000.00 USDT a pair" in c.value for c in at.caption)
        balances = table(at, "held")
        assert set(zip(balances["venue"], balances["asset"], strict=True)) == {
            ("a", "USDT"), ("a", "BTC"), ("b", "USDT"), ("b", "BTC")
        }  # fmt: skip
        at.selectbox(key="session").set_value("fresh").run()
        assert not at.exception  # the session of bars beside it still shows
        at = page("performance")
        assert at.selectbox(key="perf-session").value == "arbitrage-paper"
        assert any("not a model's bars" in c.value for c in at.caption)  # no backtest on its terms, said


def test_the_api_and_the_cli_list_a_paper_arbitrage_session(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.api.conftest import start_api
    from tradeloop.cli.main import app
    from tradeloop.identity import Role

    db = tmp_path / "ops.db"
    arbitrage_database(db)
    for api in start_api(tmp_path, f"sqlite:///{db}"):
        api.user("root", Role.ADMIN)
        headers = api.login("root")
        listed = api.client.get("/sessions", headers=headers)
        assert listed.status_code == 200, listed.text
        (arb,) = [s for s in listed.json()["items"] if s["name"] == "arbitrage-paper"]
        assert arb["strategy"] == "arbitrage" and arb["init_cash"] == 20_000.0
        assert arb["equity"] == pytest.approx(20_000 + PNL) and arb["cash"] == pytest.approx(20_000 + PNL)
        one = api.client.get(f"/sessions/{arb['id']}", headers=headers)
        assert one.status_code == 200 and one.json()["orders"]["arbitrage_paper"]["max_notional"] == 1000.0
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{db}")
    from tradeloop.settings import get_settings

    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["live", "sessions", "--wide"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    assert "arbitrage-paper" in result.output and f"{20_000 + PNL:,.2f}"[:6] in result.output
