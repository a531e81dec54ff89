"""The dashboard's arithmetic: round trips from fills, unrealised PnL, per-symbol figures and
the decision source, by hand and against the live engine's own accounting; runs cut to the
live period; the refresh interval's setting."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

from tests.app.conftest import dashboard_reads
from tradeloop.backtest import BacktestConfig
from tradeloop.errors import ConfigError

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "app"))  # the dashboard's modules, as it runs them

import comparison
import refresh
import session_data

HOUR = 3_600_000


def fills(*rows: tuple) -> pl.DataFrame:
    return pl.DataFrame(
        [dict(zip(("id", "ts", "symbol", "side", "quantity", "price", "fee"), r, strict=True)) for r in rows]
    )


def test_a_round_trip_runs_from_flat_to_flat_with_fees_on_both_sides() -> None:
    trips = session_data.round_trips(
        fills(
            (1, 0, "BTC", "sell", 1.0, 99.0, 0.1),  # nothing held: not a trade
            (2, HOUR, "BTC", "buy", 1.0, 100.0, 0.10),
            (3, 2 * HOUR, "BTC", "buy", 1.0, 110.0, 0.11),
            (4, 3 * HOUR, "BTC", "sell", 2.0, 120.0, 0.24),
            (5, 4 * HOUR, "BTC", "buy", 0.5, 130.0, 0.07),
            (6, 2 * HOUR, "ETH", "buy", 2.0, 10.0, 0.02),
            (7, 5 * HOUR, "ETH", "sell", 2.0, 9.0, 0.018),
        )
    )
    btc = trips.filter(pl.col("symbol") == "BTC").sort("entry_time")
    closed = btc.row(0, named=True)
    assert closed["quantity"] == 2.0 and closed["entry_price"] == pytest.approx(105.0)
    assert closed["exit_price"] == pytest.approx(120.0) and closed["fees"] == pytest.approx(0.45)
    assert closed["pnl"] == pytest.approx(240.0 - 210.0 - 0.45)
    assert closed["return"] == pytest.approx((240.0 - 210.0 - 0.45) / 210.0)
    assert closed["entry_time"] == datetime(1970, 1, 1, 1) and closed["exit_time"] == datetime(1970, 1, 1, 3)
    still = btc.row(1, named=True)
    assert still["is_open"] and still["pnl"] is None and still["exit_time"] is None
    eth = trips.filter(pl.col("symbol") == "ETH").row(0, named=True)
    assert eth["pnl"] == pytest.approx(18.0 - 20.0 - 0.038) and eth["pnl"] < 0


def test_the_tables_agree_with_the_engines_accounting(dashboard_env: Path) -> None:
    from tradeloop.ops import OpsStore, Position

    store = OpsStore.open(f"sqlite:///{dashboard_env / 'tradeloop.db'}")
    try:
        tables = session_data.read_session(store, "paper-demo")
        held = store.frame(Position, tables.session.id)
    finally:
        store.close()
    closed = tables.trades.filter(~pl.col("is_open"))
    assert closed.height >= 3
    for symbol, realised in held.select("symbol", "realized_pnl").iter_rows():  # the engine's own account
        assert closed.filter(pl.col("symbol") == symbol)["pnl"].sum() == pytest.approx(realised, abs=1e-6)
    # the engine marks equity as cash plus the positions at their last price
    assert tables.last_equity == pytest.approx(tables.session.cash + tables.positions["value"].sum(), rel=1e-9)
    # realised plus unrealised PnL, fees included, is all the session made
    assert tables.symbols["total_pnl"].sum() == pytest.approx(tables.last_equity - tables.session.init_cash, abs=1e-6)
    assert tables.symbols["trades"].sum() == closed.height


def test_unrealised_pnl_counts_the_entry_fees() -> None:
    held = pl.DataFrame(
        {
            "symbol": ["BTC", "ETH"],
            "quantity": [2.0, 0.0],
            "entry_price": [100.0, 5.0],
            "entry_fee": [0.2, 0.0],
            "entry_ts": [HOUR, None],
            "last_price": [110.0, 6.0],
            "realized_pnl": [0.0, 3.0],
        }
    )
    [row] = session_data.open_positions(held, equity=1000.0).to_dicts()
    assert row["symbol"] == "BTC" and row["unrealised_pnl"] == pytest.approx(19.8)
    assert row["unrealised_return"] == pytest.approx(19.8 / 200.2) and row["weight"] == pytest.approx(0.22)


def test_the_decision_source_reads_in_utc_and_merges_a_resume() -> None:
    at = [
        datetime(2025, 1, 1, 12, tzinfo=UTC),
        datetime(2025, 1, 2, 12, tzinfo=UTC),
        datetime(2025, 1, 3, 12, tzinfo=UTC),
    ]
    thresholds = pl.DataFrame(
        {
            "id": [1, 2, 3],
            "session_id": [1, 1, 1],
            "source": ["model", "model", "static"],
            "artifact": ["a" * 64, "a" * 64, None],
            "threshold": [0.6, 0.6, None],
            "reason": ["champion", "resumed", "stale"],
            "since": at,
        }
    )  # PostgreSQL: aware
    decisions = session_data.decision_sources(thresholds)
    assert decisions["since"].to_list() == [datetime(2025, 1, d, 12) for d in (1, 2, 3)]
    assert decisions["until"].to_list() == [datetime(2025, 1, 2, 12), datetime(2025, 1, 3, 12), None]
    assert decisions["source"].to_list() == ["model", "model", "fallback (reduce-only)"]
    periods = session_data.decision_periods(decisions)
    assert periods["source"].to_list() == ["model", "fallback (reduce-only)"]
    assert periods["until"].to_list() == [datetime(2025, 1, 3, 12), None]


def test_the_decision_source_is_timed_by_the_bar_it_decided_from_when_the_engine_kept_it() -> None:
    wall = [datetime(2026, 11, 27, 18, 0, s, tzinfo=UTC) for s in (1, 2, 3)]  # a replay: seconds apart
    bars = [1_735_732_800_000, 1_738_411_200_000, None]  # 2025-01-01 12:00, 2025-02-01 12:00, an older row
    thresholds = pl.DataFrame(
        {
            "id": [1, 2, 3],
            "session_id": [1, 1, 1],
            "source": ["model", "static", "model"],
            "artifact": ["a" * 64, None, "b" * 64],
            "threshold": [0.6, None, 0.55],
            "reason": ["champion", "stale", "refit"],
            "since": wall,
            "bar_ts": bars,
        }
    )
    decisions = session_data.decision_sources(thresholds)
    assert decisions["since"].to_list() == [
        datetime(2025, 1, 1, 12),
        datetime(2025, 2, 1, 12),
        datetime(2026, 11, 27, 18, 0, 3),
    ]
    assert decisions["clock"].to_list() == ["bar", "bar", "engine"]  # unknown bar: the wall clock, and says so
    assert session_data.decision_periods(decisions)["clock"].to_list() == ["bar", "bar", "engine"]


def test_a_run_cut_to_the_live_period_is_measured_from_its_equity_there() -> None:
    ts = [k * HOUR for k in range(6)]
    equity = pl.DataFrame({"ts": ts, "equity": [100.0, 110.0, 121.0, 121.0, 133.1, 100.0]}).with_columns(
        time=pl.from_epoch("ts", time_unit="ms")
    )
    run = comparison.Run(
        label="r",
        kind="research",
        equity=equity,
        trades=pl.DataFrame(schema=comparison.LEDGER_SCHEMA),
        init_cash=100.0,
        timeframe="1h",
        sizing="-",
    )
    cut = run.within(2 * HOUR, 4 * HOUR)
    assert cut.init_cash == 110.0 and cut.equity["equity"].to_list() == [121.0, 121.0, 133.1]
    row = comparison.metrics_row(cut)
    assert row["total_return"] == pytest.approx(133.1 / 110.0 - 1.0)
    assert row["cagr"] is None and row["sharpe"] is None  # three hours: nothing to annualise
    text = comparison.metrics_table([row]).to_dicts()
    shown = {r["metric"]: r["r"] for r in text}
    assert shown["total return"] == "21.00%" and shown["CAGR"].startswith("n/a: ")
    assert shown["from (UTC)"] == "1970-01-01 02:00"


def test_sizing_reads_as_words() -> None:
    assert comparison.sizing_words(BacktestConfig(fraction=0.5, fee_rate=0.001, init_cash=5000.0)) == (
        "50% of equity per new position, shared cash, fee 0.10%/side, slippage 0.00%, capital 5,000"
    )
    words = comparison.sizing_words(
        BacktestConfig(sizing="vol_target", vol_target=0.4, fraction=0.8, stop_loss=0.05, cash_sharing=False)
    )
    assert words.startswith("volatility target 40%/year, capped at 80% of equity, cash per symbol")
    assert words.endswith("stop 5.0%")


def test_the_refresh_interval_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(refresh.REFRESH_ENV, raising=False)
    assert refresh.default_seconds() == refresh.DEFAULT_S
    monkeypatch.setenv(refresh.REFRESH_ENV, "0")
    assert refresh.default_seconds() == 0 and refresh.words(0) == "off"
    for bad in ("soon", "-5", "99999"):
        monkeypatch.setenv(refresh.REFRESH_ENV, bad)
        with pytest.raises(ConfigError, match=f"{refresh.REFRESH_ENV}='{bad}'.*whole seconds"):
            refresh.default_seconds()


def test_a_bad_refresh_setting_is_named_in_the_sidebar(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from streamlit.testing.v1 import AppTest

    from tests.app.test_dashboard import DASHBOARD

    monkeypatch.setenv(refresh.REFRESH_ENV, "often")
    with dashboard_reads(tmp_path, monkeypatch):
        at = AppTest.from_file(DASHBOARD, default_timeout=60).run()
    assert not at.exception
    [error] = at.sidebar.error
    assert f"{refresh.REFRESH_ENV}='often'" in error.value and "e.g. 10" in error.value
    assert at.sidebar.selectbox(key=refresh.KEY).value == refresh.DEFAULT_S  # the dashboard still works


def test_a_split_sessions_positions_and_round_trips_are_per_book(tmp_path: Path) -> None:
    from tests.api.test_challengers_api import _split_books
    from tradeloop.ops import OpsStore

    store = OpsStore.open(f"sqlite:///{tmp_path / 'ops.db'}")
    session = store.create_session(
        name="split", strategy="sma_cross", exchange="coinbase", timeframe="4h", symbols=["BTC-USD", "ETH-USD"],
        mode="paper", init_cash=10_000.0, config={},
    )  # fmt: skip
    _split_books(store, session.id, "c" * 64)
    tables = session_data.read_session(store, "split")
    assert tables.positions.select("book", "symbol").rows() == [("c" * 64, "ETH-USD"), ("champion", "BTC-USD")]
    # the champion's sell of ETH does not close the slice's ETH buy
    trips = session_data.round_trips(
        pl.DataFrame({"id": [1, 2], "ts": [0, HOUR], "symbol": ["ETH", "ETH"], "side": ["buy", "sell"],
                      "quantity": [1.0, 1.0], "price": [50.0, 60.0], "fee": [0.0, 0.0], "book": ["c", "champion"]})
    )  # fmt: skip
    assert trips.select("book", "is_open").rows() == [("c", True)]
    assert tables.trades.select("book", "symbol").sort("book").rows() == [
        ("c" * 64, "ETH-USD"),
        ("champion", "BTC-USD"),
    ]
    store.close()
