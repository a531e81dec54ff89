"""The risk engine inside the compiled kernel equals ``tradeloop.risk`` driven bar by bar in Python.

The reference (``risk_reference.py``) runs ``RiskState.on_equity`` and ``check_batch`` at every
close over the same signals, as the live engine does; the kernel must give the same trades,
the same denials (ts, symbol, kind, rule, limit, value) and the same kill-switch trips. With
``risk=None`` or ``RiskConfig(bypass=True)`` the kernel is today's, bit for bit; with limits
that never bind it changes nothing.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from risk_reference import RefRun, risk_reference

from tradeloop.backtest import BacktestConfig, PriceArrays, kernel, kernel_risk, run_backtest, simulate_arrays
from tradeloop.errors import BacktestError
from tradeloop.risk import MarketRules, RiskConfig, RiskRule, limits
from tradeloop.strategies import SmaCross, ThresholdRule
from tradeloop.strategies.signals import ENTER_LONG, ENTER_SHORT, EXIT_LONG

SAMPLE = Path(__file__).resolve().parents[2] / "data" / "sample"
H = 3_600_000
#: every limit off: a case turns on only what it is about
OFF = {"max_orders": None, "price_band": None, "daily_loss_limit": None, "max_drawdown": None}


def real(bars: int = 1500, *, short: bool = False) -> pl.DataFrame:
    """The last ``bars`` 4h candles of BTC and ETH with SmaCross(5, 20) signals."""
    frames = [
        pl.read_parquet(SAMPLE / f"coinbase__{s}__4h.parquet").tail(bars).with_columns(symbol=pl.lit(s))
        for s in ("BTC-USD", "ETH-USD")
    ]
    return SmaCross(fast=5, slow=20, rule=ThresholdRule(allow_short=short)).signals(pl.concat(frames), by="symbol")


def crafted(symbol: str, rows: list[tuple[float, float, float, float, int]]) -> pl.DataFrame:
    """Hourly bars of one symbol from (open, high, low, close, signal)."""
    o, h, lo, c, s = zip(*rows, strict=True)
    return pl.DataFrame(
        {"ts": [i * H for i in range(len(rows))], "symbol": symbol, "open": o, "high": h, "low": lo, "close": c}
    ).with_columns(signal=pl.Series(s, dtype=pl.Int8))


def assert_same_as_reference(frame: pl.DataFrame, config: BacktestConfig, risk: RiskConfig, **kw) -> RefRun:
    result = run_backtest(frame, config, timeframe="4h", risk=risk, **kw)
    ref = risk_reference(PriceArrays.from_frame(frame), config, risk, **kw)
    cols = ("symbol", "side", "entry_ts", "exit_ts", "qty", "entry_price", "exit_price", "fees", "exit_reason")
    got = result.trades.select(cols).rows()
    assert [r[:4] + r[8:] for r in got] == [r[:4] + r[8:] for r in ref.trades]
    np.testing.assert_allclose([r[4:8] for r in got], [r[4:8] for r in ref.trades], rtol=1e-12)
    denials = sorted(result.risk_denials.rows())
    assert [d[:5] for d in denials] == [d[:5] for d in sorted(ref.denials)]
    np.testing.assert_allclose([d[5:] for d in denials], [d[5:] for d in sorted(ref.denials)], rtol=1e-9)
    trips = result.kill_switch_trips.rows()
    assert [t[:3] for t in trips] == [t[:3] for t in ref.trips]
    np.testing.assert_allclose([t[3:] for t in trips], [t[3:] for t in ref.trips], rtol=1e-9)
    equity = result.equity.sort("ts", "portfolio", maintain_order=True)["equity"].to_numpy()
    np.testing.assert_allclose(equity, np.asarray(ref.equity).reshape(-1), rtol=1e-12)
    return ref


def test_rule_codes_are_the_risk_rules_in_order() -> None:
    for code, rule in enumerate(RiskRule):
        assert getattr(limits, rule.name) == code
        assert RiskRule.of(code) is rule


def test_the_kernel_digest_follows_the_risk_sources() -> None:
    digest = hashlib.sha256(Path(kernel_risk.__file__).read_bytes() + Path(limits.__file__).read_bytes()).hexdigest()
    assert kernel.RISK_SHA256 == digest, (
        "tradeloop/backtest/kernel_risk.py or tradeloop/risk/limits.py changed, and numba's cache of the kernel "
        f'only sees kernel.py: set RISK_SHA256 = "{digest}" in tradeloop/backtest/kernel.py so it recompiles'
    )


BASE = {
    "shared": {"fraction": 0.5},
    "per-symbol": {"cash_sharing": False, "slippage": 0.001},
    "stops": {"stop_loss": 0.03, "trailing_stop": 0.05, "take_profit": 0.08, "fraction": 0.7},
    "limit": {"entry_order": "limit", "limit_offset": 0.002, "limit_ttl_bars": 3, "atr_stop": 2.0},
}


@pytest.mark.parametrize("base", BASE, ids=str)
def test_none_and_bypass_are_the_plain_backtest_bit_for_bit(base: str) -> None:
    frame, config = real(short=True), BacktestConfig(**BASE[base])
    plain = run_backtest(frame, config, timeframe="4h")
    bypass = run_backtest(frame, config, timeframe="4h", risk=RiskConfig(bypass=True, max_order_notional=1.0))
    assert plain.trades.height > 50
    assert plain.trades.equals(bypass.trades) and plain.equity.equals(bypass.equity)
    assert bypass.risk is None and bypass.risk_denials.is_empty() and bypass.kill_switch_trips.is_empty()


@pytest.mark.parametrize("base", BASE, ids=str)
@pytest.mark.parametrize("risk", [RiskConfig(**OFF), RiskConfig()], ids=["all-off", "default"])
def test_limits_that_never_bind_change_nothing(base: str, risk: RiskConfig) -> None:
    frame, config = real(bars=300, short=True), BacktestConfig(**BASE[base])
    plain = run_backtest(frame, config, timeframe="4h")
    guarded = run_backtest(frame, config, timeframe="4h", risk=risk)
    assert plain.trades.height >= 10
    assert guarded.risk == risk
    assert guarded.risk_denials.is_empty() and guarded.kill_switch_trips.is_empty()
    assert plain.trades.equals(guarded.trades) and plain.equity.equals(guarded.equity)


CASES = {  # name: (bars, shorts, BacktestConfig options, RiskConfig options: the rule that must deny)
    "max_order_notional": (1500, False, {"fraction": 0.5}, {"max_order_notional": 5200.0}),
    "max_position_notional": (1500, True, {"fraction": 0.5}, {"max_position_notional": 5300.0}),
    "max_open_positions": (1500, True, {"fraction": 0.5}, {"max_open_positions": 1}),
    "max_gross_exposure": (1500, True, {"fraction": 0.5}, {"max_gross_exposure": 0.8}),
    "max_net_exposure": (1500, True, {"fraction": 0.5}, {"max_net_exposure": 0.6}),
    "throttle": (1500, True, {"fraction": 0.5}, {"max_orders": 2, "throttle_window_ms": 3 * 86_400_000}),
    "price_band": (
        1500,
        True,
        {"entry_order": "limit", "limit_offset": 0.02, "limit_ttl_bars": 3},
        {"price_band": 0.015},
    ),
    "max_open_positions-limit": (
        1500,
        True,
        {"entry_order": "limit", "limit_offset": 0.003, "limit_ttl_bars": 2, "fraction": 0.6},
        {"max_open_positions": 1, "price_band": 0.01},
    ),
    "kill_switch-drawdown": (1500, True, {"fraction": 0.5}, {"max_drawdown": 0.3}),
    "kill_switch-drawdown-flatten": (1500, True, {"fraction": 0.5}, {"max_drawdown": 0.3, "flatten_on_kill": True}),
    "kill_switch-per-symbol-flatten": (
        1500,
        True,
        {"fraction": 0.5, "cash_sharing": False},
        {"max_drawdown": 0.25, "flatten_on_kill": True},
    ),
    "kill_switch-daily-flatten": (1200, False, {"fraction": 0.5}, {"daily_loss_limit": 0.04, "flatten_on_kill": True}),
}


@pytest.mark.parametrize("name", CASES, ids=str)
def test_each_limit_binds_as_the_python_risk_engine_decides(name: str) -> None:
    bars, short, base, options = CASES[name]
    frame, config, risk = real(bars, short=short), BacktestConfig(**base), RiskConfig(**{**OFF, **options})
    ref = assert_same_as_reference(frame, config, risk)
    rule = name.split("-")[0]
    assert rule in {d[4] for d in ref.denials}, f"{name}: {rule} never denied an intent"
    assert len(ref.trades) >= (0 if rule == "price_band" else 5)
    if rule == "kill_switch":
        assert ref.trips
        assert risk.flatten_on_kill or "kill_switch" not in {t[8] for t in ref.trades}
    for ts, portfolio, *_ in ref.trips if risk.flatten_on_kill else ():  # flat by the next open
        held = [t for t in ref.trades if portfolio in ("portfolio", t[0]) and t[2] <= ts]
        assert held and all(t[3] <= ts + 4 * H for t in held)


def test_the_default_limits_with_a_tight_drawdown_equal_the_python_risk_engine() -> None:
    ref = assert_same_as_reference(
        real(short=True), BacktestConfig(fraction=0.5, slippage=0.0005), RiskConfig(max_drawdown=0.3)
    )
    assert ref.trips and len(ref.trades) >= 5


def test_market_minimums_deny_entries_as_the_python_risk_engine() -> None:
    markets = {"BTC-USD": MarketRules(min_notional=5000.0), "ETH-USD": MarketRules(min_amount=1.6)}
    ref = assert_same_as_reference(real(), BacktestConfig(fraction=0.5), RiskConfig(**OFF), markets=markets)
    assert {d[4] for d in ref.denials} == {"min_notional", "min_amount"}
    assert len(ref.trades) >= 5


def test_exits_are_judged_before_entries_and_free_room_for_them() -> None:
    # A exits and B enters on bar 2: the exit is judged first, so B opens under max_open_positions=1
    flat = (100.0, 100.0, 100.0, 100.0)
    a = crafted("A", [(*flat, ENTER_LONG), (*flat, 0), (*flat, EXIT_LONG), (*flat, 0), (*flat, ENTER_LONG), (*flat, 0)])
    b = crafted("B", [(*flat, 0), (*flat, 0), (*flat, ENTER_LONG), (*flat, 0), (*flat, 0), (*flat, 0)])
    config, risk = BacktestConfig(fraction=0.5, fee_rate=0.0), RiskConfig(**OFF, max_open_positions=1)
    result = run_backtest(pl.concat([a, b]), config, timeframe="1h", risk=risk)
    assert result.trades.select("symbol", "entry_ts", "exit_ts", "is_open").rows() == [
        ("A", 1 * H, 3 * H, False),
        ("B", 3 * H, 5 * H, True),
    ]
    # bar 4: A would be a second open position (limit 1, value 2)
    assert result.risk_denials.rows() == [(4 * H, "portfolio", "A", "enter_long", "max_open_positions", 1.0, 2.0)]
    assert_same_as_reference(pl.concat([a, b]), config, risk)


@pytest.mark.parametrize("flatten", [False, True])
def test_the_kill_switch_trips_on_drawdown_flattens_when_asked_and_refuses_entries_to_the_end(flatten: bool) -> None:
    rows = [
        (100.0, 100.0, 100.0, 100.0, ENTER_LONG),
        (100.0, 100.0, 100.0, 100.0, 0),  # buys 100 at 100: equity 10,000, the high-water mark
        (100.0, 100.0, 89.0, 89.0, 0),  # equity 8,900: an 11% drawdown trips max_drawdown=0.1
        (88.0, 90.0, 88.0, 90.0, EXIT_LONG),  # flatten: sold at this open, 88
        (91.0, 95.0, 91.0, 95.0, ENTER_LONG),  # without flatten: sold here by the signal, at 91
        (95.0, 96.0, 95.0, 96.0, 0),
    ]
    config = BacktestConfig(fraction=1.0, fee_rate=0.0)
    risk = RiskConfig(**{**OFF, "max_drawdown": 0.1, "flatten_on_kill": flatten})
    result = run_backtest(crafted("A", rows), config, timeframe="1h", risk=risk)
    [trip] = result.kill_switch_trips.rows(named=True)
    assert (trip["ts"], trip["rule"], trip["equity"], trip["reference"]) == (2 * H, "max_drawdown", 8900.0, 10000.0)
    assert trip["value"] == pytest.approx(0.11)
    [trade] = result.trades.rows(named=True)
    assert trade["qty"] == pytest.approx(100.0) and trade["entry_price"] == 100.0
    if flatten:
        assert (trade["exit_ts"], trade["exit_price"], trade["exit_reason"]) == (3 * H, 88.0, "kill_switch")
    else:
        assert (trade["exit_ts"], trade["exit_price"], trade["exit_reason"]) == (4 * H, 91.0, "signal")
    [denied] = result.risk_denials.rows(named=True)  # the entry of bar 4, refused: nobody acknowledges
    assert (denied["ts"], denied["kind"], denied["rule"], denied["limit"]) == (4 * H, "enter_long", "kill_switch", 0.1)
    assert denied["value"] == pytest.approx(0.11)
    assert_same_as_reference(crafted("A", rows), config, risk)


def test_a_trip_cancels_the_resting_limit_entries_of_its_portfolio() -> None:
    a = crafted(
        "A",
        [
            (100.0, 100.0, 100.0, 100.0, ENTER_LONG),  # a limit buy at 99 rests from bar 1
            (100.0, 100.0, 98.0, 100.0, 0),  # fills at 99: 5,000 / 99 units
            (100.0, 100.0, 70.0, 70.0, 0),  # equity 8,535 from 10,050.5: a 15% drawdown trips at this close
            (70.0, 70.0, 70.0, 70.0, 0),
            (70.0, 70.0, 70.0, 70.0, 0),
        ],
    )
    b = crafted(
        "B",
        [
            (100.0, 100.0, 100.0, 100.0, 0),
            (100.0, 100.0, 100.0, 100.0, ENTER_LONG),  # a limit buy at 99 rests from bar 2 for 3 candles
            (100.0, 100.0, 99.5, 100.0, 0),  # not traded through: still resting when the switch trips
            (100.0, 100.0, 95.0, 96.0, 0),  # traded through: it would fill at 99 had the trip not canceled it
            (96.0, 96.0, 96.0, 96.0, 0),
        ],
    )
    frame = pl.concat([a, b])
    config = BacktestConfig(fraction=0.5, fee_rate=0.0, entry_order="limit", limit_offset=0.01, limit_ttl_bars=3)
    untripped = run_backtest(frame, config, timeframe="1h", risk=RiskConfig(**OFF))
    assert untripped.trades.filter(pl.col("symbol") == "B")["entry_ts"].to_list() == [3 * H]
    risk = RiskConfig(**{**OFF, "max_drawdown": 0.1})
    result = run_backtest(frame, config, timeframe="1h", risk=risk)
    assert result.kill_switch_trips.select("ts", "rule").rows() == [(2 * H, "max_drawdown")]
    assert result.trades["symbol"].to_list() == ["A"]  # B's resting entry was canceled at the trip
    assert result.risk_denials.is_empty()  # canceled, not denied: no entry was decided after the trip
    assert_same_as_reference(frame, config, risk)


def test_a_denied_exit_keeps_the_position_and_drops_the_entry_behind_it() -> None:
    rows = [
        (100.0, 100.0, 100.0, 100.0, ENTER_LONG),  # asks 5,000 at 100: 50 >= the minimum 49.5
        (102.0, 102.0, 102.0, 102.0, 0),  # fills 5,000 / 102 = 49.02 at the open
        (90.0, 90.0, 90.0, 90.0, ENTER_SHORT),  # the exit's 49.02 < 49.5: denied; the short (52.3) dropped
        (90.0, 90.0, 90.0, 90.0, EXIT_LONG),  # denied again
        (90.0, 90.0, 90.0, 90.0, 0),
    ]
    config = BacktestConfig(fraction=0.5, fee_rate=0.0)
    risk, markets = RiskConfig(**OFF), {"A": MarketRules(min_amount=49.5)}
    result = run_backtest(crafted("A", rows), config, timeframe="1h", risk=risk, markets=markets)
    [trade] = result.trades.rows(named=True)
    assert trade["is_open"] and trade["side"] == "long" and trade["qty"] == pytest.approx(5000.0 / 102.0)
    denials = result.risk_denials.select("ts", "kind", "rule", "limit").rows()
    assert denials == [(2 * H, "exit_long", "min_amount", 49.5), (3 * H, "exit_long", "min_amount", 49.5)]
    assert_same_as_reference(crafted("A", rows), config, risk, markets=markets)


def test_an_entry_left_with_dust_by_the_cash_cap_does_not_fill_under_risk() -> None:
    # bar 1: A's entry spends the cash but 1.8e-12 (the fee's rounding at 19); B's would buy 1.8e-14 units:
    # dust the risk engine counts as flat and would never let be sold. Under risk it does not fill, so B
    # is flat when its exit (bar 2, nothing to exit) and its next entry (bar 3, after A sold) come.
    def bars(price: float, signals: list[int]) -> list[tuple[float, float, float, float, int]]:
        return [(price, price, price, price, s) for s in signals]

    frame = pl.concat(
        [
            crafted("A", bars(19.0, [ENTER_LONG, 0, EXIT_LONG, 0, 0, 0])),
            crafted("B", bars(100.0, [ENTER_LONG, 0, EXIT_LONG, ENTER_LONG, 0, 0])),
        ]
    )
    config = BacktestConfig(fraction=1.0, fee_rate=0.00075)
    plain = run_backtest(frame, config, timeframe="1h")  # without risk the dust is bought, then sold at bar 3
    dust, _ = plain.trades.filter(pl.col("symbol") == "B")["qty"].to_list()
    assert 1e-15 < dust < 1e-12
    result = run_backtest(frame, config, timeframe="1h", risk=RiskConfig(**OFF))
    assert result.risk_denials.is_empty()
    [a, b] = result.trades.rows(named=True)
    assert (a["symbol"], a["entry_ts"], a["exit_ts"]) == ("A", 1 * H, 3 * H)
    cash = 10_000.0 * (1 - 0.00075) / (1 + 0.00075)  # A bought with all of it and sold at the same price
    assert (b["symbol"], b["entry_ts"], b["is_open"]) == ("B", 4 * H, True)
    assert b["qty"] == pytest.approx(cash / (100.0 * (1 + 0.00075)), rel=1e-12)
    assert_same_as_reference(frame, config, RiskConfig(**OFF))


def test_per_symbol_portfolios_split_across_threads_equal_one_pass() -> None:
    rng = np.random.default_rng(11)
    n, k = 400, 7
    close = 100.0 * np.exp(np.cumsum(rng.normal(0, 0.02, (n, k)), axis=0))
    open_ = np.vstack([close[:1], close[:-1]])
    signal = rng.choice([0, ENTER_LONG, ENTER_SHORT, EXIT_LONG], (n, k), p=[0.9, 0.04, 0.03, 0.03]).astype(np.int8)
    prices = PriceArrays(
        ts=np.arange(n) * 4 * H,
        symbols=tuple(f"S{j}" for j in range(k)),
        open=open_,
        high=np.maximum(open_, close),
        low=np.minimum(open_, close),
        close=close,
        signal=signal,
    )
    config = BacktestConfig(cash_sharing=False, fraction=0.8)
    risk = RiskConfig(
        max_drawdown=0.2, daily_loss_limit=0.1, flatten_on_kill=True, max_orders=2, throttle_window_ms=2 * 86_400_000
    )
    one = simulate_arrays(prices, config, threads=1, risk=risk)
    many = simulate_arrays(prices, config, threads=3, risk=risk)
    np.testing.assert_array_equal(one[0], many[0])
    assert len(one[5]) > 20 and (one[6][:, kernel_risk.TR_BAR] >= 0).sum() >= 2
    by = np.lexsort
    for i, keys in ((1, (kernel.T_ENTRY_BAR, kernel.T_SYMBOL)), (5, (kernel_risk.D_BAR, kernel_risk.D_SYMBOL))):
        a, b = one[i], many[i]
        np.testing.assert_array_equal(a[by([a[:, c] for c in keys])], b[by([b[:, c] for c in keys])])
    np.testing.assert_array_equal(one[6], many[6])


def test_market_rules_on_a_grid_or_without_risk_are_refused() -> None:
    frame = real(bars=100)
    with pytest.raises(BacktestError, match="amount_step"):
        run_backtest(
            frame,
            BacktestConfig(),
            timeframe="4h",
            risk=RiskConfig(),
            markets={"BTC-USD": MarketRules(min_notional=10.0, amount_step=0.001)},
        )
    with pytest.raises(BacktestError, match="risk=RiskConfig"):
        run_backtest(frame, BacktestConfig(), timeframe="4h", markets={"BTC-USD": MarketRules(min_notional=10.0)})
    with pytest.raises(BacktestError, match="does not trade"):
        run_backtest(frame, BacktestConfig(), timeframe="4h", risk=RiskConfig(), markets={"SOL-USD": MarketRules()})
    grid = MarketRules.from_ccxt({"limits": {"cost": {"min": 5.0}}, "precision": {"amount": 1e-5, "price": 0.01}})
    minimums = replace(grid, amount_step=None, price_tick=None)  # what the error says to pass
    run_backtest(frame, BacktestConfig(), timeframe="4h", risk=RiskConfig(), markets={"BTC-USD": minimums})
