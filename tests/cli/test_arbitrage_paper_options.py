"""``tradeloop arbitrage run --paper-execute``: the inventory and the paper session are checked
before any venue is connected to (the venues' URLs here are a closed port: reaching one would
be an exchange error, exit 4, instead of the refusal)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.api.conftest import free_port
from tradeloop.cli.main import app
from tradeloop.ops import OpsStore
from tradeloop.settings import get_settings

FUNDED = ["--inventory", "binance=USDT:1000,BTC:1", "--inventory", "binanceus=USDT:1000,BTC:1"]


def invoke(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *args: str):
    for name in ("REDIS_URL", "DATABASE_URL", "TRADELOOP_EXCHANGE_API_URL", "TRADELOOP_EXCHANGE_WS_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'ops.db'}")
    monkeypatch.setenv("TRADELOOP_DATA_DIR", str(tmp_path / "data"))
    get_settings.cache_clear()
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    venues = ["--venue", "binance", "--venue", "binanceus", "--api-url", f"binance={closed}"]
    try:
        return CliRunner().invoke(
            app, ["arbitrage", "run", *venues, "--api-url", f"binanceus={closed}", "--paper-execute", *args]
        )
    finally:
        get_settings.cache_clear()


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--inventory", "binance=USDT:inf", "--inventory", "binanceus=BTC:1"], "--inventory 'binance=USDT:inf'"),
        (["--inventory", "binance=USDT:1,USDT:2", "--inventory", "binanceus=BTC:1"], "USDT on binance is given twice"),
        (["--inventory", "binance=USDT:1", "--inventory", "binance=USDT:2,BTC:1"], "given twice"),
        (["--inventory", "binance=USDT:1000"], "none for binanceus"),
        (["--inventory", "binance=BTC:1", "--inventory", "binanceus=BTC:1"], "init_cash=0"),
        ([*FUNDED, "--symbol", "BTC-USDT", "--symbol", "ETH-USDC"], "keeps one quote asset"),
    ],
)
def test_bad_inventory_is_refused_naming_the_option(tmp_path, monkeypatch, args: list[str], said: str) -> None:
    result = invoke(tmp_path, monkeypatch, "--max-notional", "100", *args)
    assert result.exit_code == 2 and said in result.output, result.output
    assert "inventory[" not in result.output  # the option's name, not the field's


def test_the_paper_session_is_checked_before_connecting(tmp_path, monkeypatch) -> None:
    store = OpsStore.open(f"sqlite:///{tmp_path / 'ops.db'}")
    store.create_session(name="arbitrage-paper", strategy="sma", exchange="binance", timeframe="1h",
                         symbols=["BTC-USDT"], mode="live", init_cash=1.0, config={})  # fmt: skip
    stored = {"arbitrage_paper": {"max_notional": 100.0, "min_notional": 0.0, "inventory": {}}}
    store.create_session(name="done", strategy="arbitrage", exchange="binance", timeframe="quote",
                         symbols=["binance:BTC-USDT", "binanceus:BTC-USDT"], mode="paper", init_cash=2000.0,
                         config=stored)  # fmt: skip
    store.set_status("done", "stopped")
    store.close()
    result = invoke(tmp_path, monkeypatch, "--max-notional", "100", *FUNDED)
    assert result.exit_code == 2 and "is a live sma session" in result.output, result.output
    result = invoke(tmp_path, monkeypatch, "--max-notional", "100", *FUNDED, "--paper-session", "done")
    assert result.exit_code == 8 and "is stopped (final)" in result.output, result.output
