"""The plain-case kernel (``kernel_plain.simulate_plain``) equals the general kernel bit for bit.

``simulate_arrays`` takes the plain loop for market entries without stops or risk and one symbol
per portfolio; the general kernel (``kernel.simulate``) stays the definition. Every case runs
the same inputs through both (the general one by declaring no run plain) on the bundled real
candles, gaps included, and compares every output array exactly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from tradeloop.backtest import BacktestConfig, PriceArrays, kernel_plain, simulate_arrays, size_fractions
from tradeloop.risk import RiskConfig
from tradeloop.strategies import SmaCross, ThresholdRule

SAMPLE = Path(__file__).resolve().parents[2] / "data" / "sample"
SERIES = ("coinbase__BTC-USD__4h", "coinbase__ETH-USD__4h", "binance__BTC-USDT__1d")


def real_prices(series: tuple[str, ...], *, short: bool) -> PriceArrays:
    """The series' candles side by side on the union of their timestamps (NaN where one has no
    candle: the daily series has one every sixth row), with SmaCross(5, 20) signals."""
    frames = [pl.read_parquet(SAMPLE / f"{name}.parquet") for name in series]
    grid = pl.concat([f.select("ts") for f in frames]).unique().sort("ts")
    joined = [grid.join(f, on="ts", how="left") for f in frames]
    wide = {c: np.ascontiguousarray(np.column_stack([f[c].to_numpy() for f in joined])) for c in ("open", "close")}
    strategy = SmaCross(fast=5, slow=20, rule=ThresholdRule(allow_short=short))
    return PriceArrays(
        ts=grid["ts"].to_numpy(),
        symbols=series,
        open=wide["open"],
        high=np.fmax(wide["open"], wide["close"]),
        low=np.fmin(wide["open"], wide["close"]),
        close=wide["close"],
        signal=strategy.wide_signals({"close": wide["close"]}),
    )


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the runs of the plain loop (one per block of symbols)."""
    seen: list[int] = []
    plain = kernel_plain.simulate_plain

    def spy(*args):
        seen.append(1)
        return plain(*args)

    monkeypatch.setattr(kernel_plain, "simulate_plain", spy)
    return seen


def general(monkeypatch: pytest.MonkeyPatch, *args, **kwargs) -> tuple:
    """``simulate_arrays`` with every run sent to the general kernel."""
    with monkeypatch.context() as m:
        m.setattr(kernel_plain, "is_plain", lambda *a, **k: False)
        return simulate_arrays(*args, **kwargs)


def assert_identical(got: tuple, expected: tuple) -> None:
    assert len(got) == len(expected) == 7
    for a, b in zip(got, expected, strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a, b)


CASES = {  # name: (series, shorts, BacktestConfig options)
    "one series": (SERIES[:1], False, {"cash_sharing": True}),
    "one series, shorts, slippage": (SERIES[1:2], True, {"slippage": 0.0007, "fee_rate": 0.002}),
    "per symbol": (SERIES, False, {"cash_sharing": False}),
    "per symbol, shorts": (SERIES, True, {"cash_sharing": False, "fraction": 0.4, "slippage": 0.001}),
    "per symbol, close at end": (SERIES, True, {"cash_sharing": False, "close_at_end": True, "fee_rate": 0.0}),
    "vol target": (SERIES, True, {"cash_sharing": False, "sizing": "vol_target", "vol_target": 0.4}),
}


@pytest.mark.parametrize("threads", [1, 2], ids=lambda t: f"threads={t}")
@pytest.mark.parametrize("case", CASES, ids=str)
def test_plain_kernel_equals_the_general_kernel_on_real_data(
    case: str, threads: int, calls: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    series, short, options = CASES[case]
    prices = real_prices(series, short=short)
    config = BacktestConfig(**options)
    size_frac = size_fractions(prices, config, "4h")
    got = simulate_arrays(prices, config, size_frac=size_frac, threads=threads)
    assert calls, "the plain case must take the plain kernel"
    expected = general(monkeypatch, prices, config, size_frac=size_frac, threads=threads)
    assert len(expected[1]) > 50 and np.isnan(prices.close).any() == (len(series) > 1)
    if short:
        assert (expected[1][:, kernel_plain.kernel_exits.T_DIRECTION] < 0).any()
    assert_identical(got, expected)


@pytest.mark.parametrize(
    ("options", "risk"),
    [
        ({"cash_sharing": False, "stop_loss": 0.03}, None),
        ({"cash_sharing": False, "trailing_stop": 0.05, "take_profit": 0.1}, None),
        ({"cash_sharing": False, "atr_stop": 2.0}, None),
        ({"cash_sharing": False, "entry_order": "limit", "limit_offset": 0.002}, None),
        ({"cash_sharing": False}, RiskConfig(max_open_positions=1, max_drawdown=0.2)),
    ],
    ids=["stop loss", "trailing + take profit", "atr stop", "limit entries", "risk"],
)
def test_runs_with_stops_limits_or_risk_take_the_general_kernel(
    options: dict, risk: RiskConfig | None, calls: list[int]
) -> None:
    prices = real_prices(SERIES[:2], short=True)
    plain = simulate_arrays(prices, BacktestConfig(cash_sharing=False), threads=1)
    assert len(calls) == 1
    other = simulate_arrays(prices, BacktestConfig(**options), threads=1, risk=risk)
    assert len(calls) == 1, "not the plain case: the general kernel runs it"
    assert not np.array_equal(plain[0], other[0])  # and its rules do change the result


def test_shared_cash_across_symbols_takes_the_general_kernel(calls: list[int]) -> None:
    prices = real_prices(SERIES[:2], short=False)
    equity, trades, *_ = simulate_arrays(prices, BacktestConfig(cash_sharing=True, fraction=0.5))
    assert not calls and equity.shape[1] == 1 and len(trades) > 50


def test_is_plain_names_what_the_plain_loop_leaves_out() -> None:
    def plain(risk: tuple | None = None, one: bool = True, **options) -> bool:
        scalars = BacktestConfig(**options).kernel_scalars()
        return kernel_plain.is_plain(scalars, risk, one_symbol_per_portfolio=one)

    assert plain() and plain(fee_rate=0.0, slippage=0.01, fraction=0.3, close_at_end=True)
    assert plain(sizing="vol_target", vol_target=0.5)
    assert not plain(one=False)
    assert not plain(risk=())
    for option in ("stop_loss", "take_profit", "trailing_stop", "atr_stop", "atr_trailing"):
        assert not plain(**{option: 0.05})
    assert not plain(entry_order="limit")
