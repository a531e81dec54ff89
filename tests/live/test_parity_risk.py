"""Research/live parity with the risk engine on: a replay through the live engine (paper broker,
promoted model) under a binding ``RiskConfig`` fills exactly what the backtest under the same
config fills, and both refuse the same entries for the same reasons.

Each case binds one limit on the last ``BARS`` bars of the bundled BTC and ETH candles (the
backtest shows it denying entries there, and trading around them). A denied entry is refused
whole, never resized: the fills' quantities would differ. The kill switch trips on the same bar
with the same drawdown; the live engine then refuses entries before the pre-trade check
(``entry_refused``, awaiting ``tradeloop live ack``), which the backtest, where nobody
acknowledges, records as ``kill_switch`` denials, one per refused entry.
"""

from __future__ import annotations

import asyncio

import numpy as np
import polars as pl
import pytest

from live.brokers.paper import PaperBroker
from live.runner import SessionConfig, run_session
from tests.live.conftest import SYMBOLS, World, backtest_result, live_fills, trade_fills
from tradeloop.backtest import BacktestConfig
from tradeloop.ops import EquityPoint
from tradeloop.risk import MarketRules, RiskConfig

BARS = 600
#: every limit off: a case turns on only the one it is about
OFF = {"max_orders": None, "price_band": None, "daily_loss_limit": None, "max_drawdown": None}
#: limit entries (a trip's cancel of a resting one: tests/live/test_risk_stage.py, tests/backtest/test_kernel_risk.py)
LIMIT = {"entry_order": "limit", "limit_offset": 0.01, "limit_ttl_bars": 6}
CASES = {  # entries ask for fraction 0.5 of an equity of 9,400 to 10,800 over these bars: (risk, orders)
    "max_order_notional": ({"max_order_notional": 5000.0}, {}),
    "max_position_notional": ({"max_position_notional": 5000.0}, {}),
    "max_open_positions": ({"max_open_positions": 1}, {}),
    "max_gross_exposure": ({"max_gross_exposure": 0.6}, {}),
    "max_net_exposure": ({"max_net_exposure": 0.6}, {}),
    "throttle": ({"max_orders": 1, "throttle_window_ms": 3 * 86_400_000}, {}),
    "price_band": ({"price_band": 0.02}, {**LIMIT, "limit_offset": 0.03}),  # every limit entry is 3% away
    "kill_switch": ({"max_drawdown": 0.05}, {}),
    "kill_switch-flatten": ({"max_drawdown": 0.05, "flatten_on_kill": True}, {}),
    "daily_loss": ({"daily_loss_limit": 0.02}, {}),
    "kill_switch-limit": ({"max_drawdown": 0.05}, LIMIT),
    "min_notional": ({}, {}),  # with MARKETS: BTC's entries (about 5,000) are under its minimum
}
#: a venue's minimums for the min_notional case (the paper broker has none: the test gives it these)
MARKETS = {SYMBOLS[0]: MarketRules(min_notional=6000.0), SYMBOLS[1]: MarketRules(min_notional=10.0)}


@pytest.mark.parametrize("case", CASES, ids=str)
def test_a_binding_limit_refuses_the_same_entries_live_and_in_the_backtest(
    trained_world: World, case: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = trained_world
    markets = MARKETS if case == "min_notional" else None
    if markets is not None:  # the live engine reads a broker's market_rules (a venue's, from ccxt)
        monkeypatch.setattr(PaperBroker, "market_rules", lambda self, symbols: markets, raising=False)
    start = int(world.candles.filter(pl.col("symbol") == SYMBOLS[0])["ts"][-BARS])
    options, orders = CASES[case]
    risk = RiskConfig(**{**OFF, **options})
    name = f"risk-parity-{case}"
    config = SessionConfig(name=name, start=start, window_bars=400, fraction=0.5, risk=risk, orders=orders)
    engine = asyncio.run(run_session(world.settings, config))
    store, sid = engine.store, engine.session.id
    session = store.session(name)
    assert RiskConfig.parse(session.risk_config) == risk
    result = backtest_result(
        world, start=start, config=BacktestConfig(**session.config), window=400, risk=risk, markets=markets
    )

    # the same fills: time, symbol, side, why, quantity, price; and the same final equity
    fills, expected = live_fills(store, sid), trade_fills(result.trades)
    assert len(expected) >= (0 if case == "price_band" else 4)  # the band refuses every limit entry here
    assert [(*f[:3], f[5]) for f in fills] == [(*e[:3], e[5]) for e in expected]
    np.testing.assert_allclose([f[3] for f in fills], [e[3] for e in expected], rtol=1e-9)
    np.testing.assert_allclose([f[4] for f in fills], [e[4] for e in expected], rtol=1e-12)
    equity = store.frame(EquityPoint, sid).sort("ts")["equity"][-1]
    assert equity == pytest.approx(float(result.equity.sort("ts")["equity"][-1]), rel=1e-9)

    # the same denials, with the same numbers
    audit = store.audit_log(sid)
    denied = sorted(
        (a.detail["ts"], a.detail["instrument"].split(":", 1)[1], a.detail["kind"], a.detail["rule"], a.detail["value"])
        for a in audit
        if a.event == "risk_denied"
    )
    table = result.risk_denials
    by_check = sorted(
        table.filter(pl.col("rule") != "kill_switch").select("ts", "symbol", "kind", "rule", "value").rows()
    )
    assert [d[:4] for d in denied] == [d[:4] for d in by_check]
    np.testing.assert_allclose([d[4] for d in denied], [d[4] for d in by_check], rtol=1e-9)
    rule = case.split("-")[0]
    bound = set(table["rule"]) | set(result.kill_switch_trips["rule"])  # a denial's rule, or a trip's
    assert rule in bound, f"{rule} never bound over these bars"

    # the same trip; the live engine's refusals while it waits for an ack are the backtest's kill_switch denials
    trips = [(a.detail["ts"], a.detail["rule"], a.detail["value"]) for a in audit if a.event == "kill_switch_tripped"]
    expected_trips = result.kill_switch_trips.select("ts", "rule", "value").rows()
    assert [t[:2] for t in trips] == [t[:2] for t in expected_trips]
    np.testing.assert_allclose([t[2] for t in trips], [t[2] for t in expected_trips], rtol=1e-9)
    refused = [a for a in audit if a.event == "entry_refused"]
    assert len(refused) == table.filter(pl.col("rule") == "kill_switch").height
    if risk.flatten_on_kill:
        assert any(f[5] == "kill_switch" for f in fills)
