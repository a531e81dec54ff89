"""``tradeloop live run --risk KEY=VALUE`` stores a session's risk limits; a bad key or value
exits 2 naming it, its value and the fix, before any session exists; ``tradeloop live risk``
shows the limits and the risk engine's state."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tradeloop.data import CandleLake
from tradeloop.data.importer import import_sample
from tradeloop.ops import OpsStore, Position
from tradeloop.risk import RiskConfig

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("risk-cli")
    import_sample(CandleLake(root / "lake"))
    return root


def tradeloop(*args: str, data_dir: Path) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "TRADELOOP_DATA_DIR": str(data_dir), "COLUMNS": "200", "HOME": str(data_dir)}
    return subprocess.run(
        [sys.executable, "-m", "tradeloop", *args], capture_output=True, text=True, env=env, cwd=ROOT, timeout=300
    )


@pytest.mark.parametrize(
    ("option", "named"),
    [
        ("max_drawdown=1.5", ["max_drawdown", "1.5"]),
        ("max_order_notional=lots", ["max_order_notional", "lots"]),
        ("max_drawdwn=0.2", ["max_drawdwn"]),
        ("max_drawdown", ["KEY=VALUE"]),
        ("max_orders=99999999999999999999999", ["max_orders"]),  # once an OverflowError at start
        ("max_order_notional=Infinity", ["max_order_notional", "inf"]),  # would turn the limit silently off
        ("max_drawdown=NaN", ["max_drawdown"]),
        ("bypass=true", ["bypass", "tests only"]),
    ],
)
def test_a_bad_risk_option_exits_2_naming_it_before_any_session(data_dir: Path, option: str, named: list) -> None:
    done = tradeloop("live", "run", "--name", "bad", "--allow-in-sample", "--risk", option, data_dir=data_dir)
    assert done.returncode == 2, done.stdout + done.stderr
    for text in named:
        assert text in done.stderr
    assert not (data_dir / "tradeloop.db").exists() or all(s.name != "bad" for s in _sessions(data_dir))


def _sessions(data_dir: Path) -> list:
    store = OpsStore.open(f"sqlite:///{data_dir / 'tradeloop.db'}")
    try:
        return store.sessions()
    finally:
        store.close()


def test_risk_limits_are_stored_with_the_session_and_shown(data_dir: Path, tmp_path: Path) -> None:
    limits = tmp_path / "risk.json"
    limits.write_text(json.dumps({"max_open_positions": 1, "max_drawdown": 0.5}))
    done = tradeloop(
        "live", "run", "--name", "limited", "--allow-in-sample", "--max-bars", "30", "--risk-file", str(limits),
        "--risk", "max_drawdown=0.25", "--risk", "price_band=null", data_dir=data_dir,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    [session] = [s for s in _sessions(data_dir) if s.name == "limited"]
    expected = RiskConfig(max_open_positions=1, max_drawdown=0.25, price_band=None)  # the pair overrides the file
    assert RiskConfig.parse(session.risk_config) == expected
    shown = tradeloop("live", "risk", "limited", data_dir=data_dir)
    assert shown.returncode == 0, shown.stderr
    cells = [[c.strip() for c in line.strip("│┃ ").split("│")] for line in shown.stdout.splitlines() if "│" in line]
    lines = {row[0]: " ".join(row) for row in cells if row and row[0]}
    assert "0.25" in lines["max_drawdown"] and "off" in lines["price_band"] and "1" in lines["max_open_positions"]
    assert "armed" in shown.stdout  # the kill switch, not tripped


def test_positions_are_listed_by_instrument_with_pnl_and_liquidation(data_dir: Path) -> None:
    store = OpsStore.open(f"sqlite:///{data_dir / 'tradeloop.db'}")
    try:
        session = store.create_session(
            name="held", strategy="sma_cross", exchange="binanceusdm", timeframe="1m", symbols=["BTC-USDT"],
            mode="paper", init_cash=1000.0, config={},
        )  # fmt: skip
        with store.transaction() as db:
            db.add(
                Position(
                    session_id=session.id, venue="binanceusdm", symbol="BTC-USDT", quantity=-0.5, entry_price=100.0,
                    entry_fee=0.05, realized_pnl=12.5, last_price=90.0, liquidation_price=180.25,
                )
            )  # fmt: skip
    finally:
        store.close()
    shown = tradeloop("live", "positions", "held", data_dir=data_dir)
    assert shown.returncode == 0, shown.stderr
    row = next(line for line in shown.stdout.splitlines() if "binanceusdm:BTC-USDT" in line)
    cells = [c.strip() for c in row.strip("│ ").split("│")]
    # a short of 0.5 from 100 marked at 90 gains 0.5 * 10 = 5.00, less the 0.05 entry fee paid: 4.95
    assert cells[0] == "champion" and cells[2:] == ["-0.50", "100.00", "90.00", "4.95", "12.50", "180.25"]
    assert "cash: champion 1,000.00, whole session 1,000.00" in shown.stdout


def test_order_rules_of_a_new_session_are_stored_and_a_bad_one_exits_2(data_dir: Path) -> None:
    for option, named in (("stop_loss=2", "stop_loss"), ("take_profit=Infinity", "take_profit"),
                          ("init_cash=5", "--cash")):  # fmt: skip
        bad = tradeloop("live", "run", "--name", "badorders", "--allow-in-sample", "--orders", option,
                        data_dir=data_dir)  # fmt: skip
        assert bad.returncode == 2, bad.stdout + bad.stderr
        assert named in bad.stderr
    done = tradeloop(
        "live", "run", "--name", "ordered", "--allow-in-sample", "--max-bars", "5", "--orders", "stop_loss=0.05",
        "--orders", "entry_order=limit", "--orders", "limit_offset=0.002", data_dir=data_dir,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    [session] = [s for s in _sessions(data_dir) if s.name == "ordered"]
    assert session.config["stop_loss"] == 0.05 and session.config["entry_order"] == "limit"
    assert session.config["limit_offset"] == 0.002
    assert all(s.name != "badorders" for s in _sessions(data_dir))


@pytest.mark.parametrize(
    ("options", "named"),
    [
        (["--fraction", "5"], ["--fraction=5.0", "less than or equal to 1"]),
        (["--cash", "-3"], ["--cash=-3.0", "greater than 0"]),
        (["--symbol", "BTC-USD", "--symbol", "BTC-USD"], ["--symbol=", "names BTC-USD more than once"]),
    ],
)
def test_a_bad_session_option_exits_2_naming_it_as_typed_without_a_traceback(
    data_dir: Path, options: list[str], named: list[str]
) -> None:
    done = tradeloop("live", "run", "--name", "bad-option", "--allow-in-sample", *options, data_dir=data_dir)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr and all(text in done.stderr for text in named), done.stderr
    assert not (data_dir / "tradeloop.db").exists() or all(s.name != "bad-option" for s in _sessions(data_dir))
