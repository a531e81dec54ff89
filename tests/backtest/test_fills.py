"""The pure-Python rule helpers (what the live paper broker calls) equal the kernel on random bars; the ATR."""

import hashlib
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from tradeloop.backtest import (
    BacktestConfig,
    PriceArrays,
    WilderAtr,
    kernel,
    kernel_exits,
    kernel_plain,
    limit_fill_price,
    limit_price,
    next_extreme,
    run_backtest,
    simulate_arrays,
    stop_exit,
    stop_levels,
    wilder_atr,
)
from tradeloop.backtest import fills as fills_module
from tradeloop.backtest.reference import atr_reference
from tradeloop.strategies.signals import ENTER_LONG, ENTER_SHORT, EXIT_LONG, EXIT_SHORT
from tradeloop.trading import OrderIntentKind, OrderSide

H = 3_600_000
SIDES = {ENTER_LONG: OrderSide.BUY, ENTER_SHORT: OrderSide.SELL}


def prices(o: np.ndarray, h: np.ndarray, lo: np.ndarray, c: np.ndarray, signal: np.ndarray) -> PriceArrays:
    return PriceArrays(
        ts=np.arange(c.shape[0]) * H,
        symbols=tuple(f"S{j}" for j in range(c.shape[1])),
        open=o,
        high=h,
        low=lo,
        close=c,
        signal=signal.astype(np.int8),
    )


def random_bars(rng: np.random.Generator, n: int, k: int, grid: float) -> tuple[np.ndarray, ...]:
    """Random-walk candles on a price grid (so touches of a level are frequent)."""
    close = 100.0 + np.cumsum(rng.integers(-3, 4, (n, k)), axis=0) * grid
    open_ = np.vstack([close[:1], close[:-1] + rng.integers(-2, 3, (n - 1, k)) * grid])
    high = np.maximum(open_, close) + rng.integers(0, 4, (n, k)) * grid
    low = np.minimum(open_, close) - rng.integers(0, 4, (n, k)) * grid
    return open_, high, low, close


def test_limit_fill_price_equals_the_kernel_on_random_bars() -> None:
    rng = np.random.default_rng(3)
    k = 600  # one independent portfolio per symbol: decision bar, one bar for the order, one bar after
    o, h, lo, c = (np.full((3, k), 100.0) for _ in range(4))
    o[1], h[1], lo[1], c[1] = 100.0 + rng.integers(-4, 5, (4, k)) * 0.5  # a grid that hits 99 and 101 exactly
    h[1] = np.maximum.reduce([o[1], h[1], lo[1], c[1]])
    lo[1] = np.minimum.reduce([o[1], lo[1], c[1]])
    signal = np.zeros((3, k), dtype=np.int8)
    signal[0] = rng.choice([ENTER_LONG, ENTER_SHORT], k)
    config = BacktestConfig(fee_rate=0.0, cash_sharing=False, entry_order="limit", limit_offset=0.01)
    _, trades, *_ = simulate_arrays(prices(o, h, lo, c, signal), config, threads=1)
    filled = {int(t[kernel.T_SYMBOL]): t for t in trades}
    outcomes = set()
    for j in range(k):
        side = SIDES[int(signal[0, j])]
        expected = limit_fill_price(side, limit_price(side, c[0, j], 0.01), o[1, j], h[1, j], lo[1, j])
        if expected is None:
            assert j not in filled
            touched = lo[1, j] == 99.0 if side is OrderSide.BUY else h[1, j] == 101.0
            outcomes.add("touch" if touched else "away")
        else:
            assert filled[j][kernel.T_ENTRY_BAR] == 1 and filled[j][kernel.T_ENTRY_PRICE] == expected
            outcomes.add("gap" if expected != limit_price(side, 100.0, 0.01) else "through")
    assert outcomes == {"touch", "away", "gap", "through"}


@pytest.mark.parametrize("entry_order", ["market", "limit"])
def test_stop_helpers_replay_the_kernel_on_random_bars(entry_order: str) -> None:
    """Walk each trade bar by bar with the helpers, as the live engine would, and find the kernel's exit."""
    rng = np.random.default_rng(11)
    n, k = 400, 12
    o, h, lo, c = random_bars(rng, n, k, 0.25)
    signal = rng.choice(
        [0, ENTER_LONG, ENTER_SHORT, EXIT_LONG, EXIT_SHORT], (n, k), p=[0.9, 0.03, 0.03, 0.02, 0.02]
    ).astype(np.int8)
    limit = {"entry_order": "limit", "limit_offset": 0.002, "limit_ttl_bars": 2} if entry_order == "limit" else {}
    config = BacktestConfig(
        fee_rate=0.001,
        slippage=0.0005,
        cash_sharing=False,
        stop_loss=0.03,
        take_profit=0.04,
        trailing_stop=0.025,
        atr_stop=1.5,
        atr_trailing=2.0,
        atr_window=5,
        **limit,
    )
    _, trades, *_ = simulate_arrays(prices(o, h, lo, c, signal), config, threads=1)
    atr = wilder_atr(h, lo, c, window=5)
    reasons = {kernel.STOP_LOSS: "stop", kernel.TRAILING_STOP: "trail", kernel.TAKE_PROFIT: "target"}
    seen = set()
    for trade in trades:
        j, entry_bar, exit_bar = (int(trade[f]) for f in (kernel.T_SYMBOL, kernel.T_ENTRY_BAR, kernel.T_EXIT_BAR))
        side = OrderSide.BUY if trade[kernel.T_DIRECTION] > 0 else OrderSide.SELL
        decided = max(t for t in range(entry_bar) if signal[t, j] & (ENTER_LONG | ENTER_SHORT))
        entry_price, extreme = trade[kernel.T_ENTRY_PRICE], trade[kernel.T_ENTRY_PRICE]
        found = None
        for t in range(entry_bar, exit_bar + 1):
            levels = stop_levels(
                side=side,
                entry_price=entry_price,
                extreme=extreme,
                entry_atr=atr[decided, j],
                prev_atr=atr[t - 1, j],
                config=config,
            )
            fresh_limit = entry_order == "limit" and t == entry_bar
            hit = stop_exit(levels, open_=o[t, j], high=h[t, j], low=lo[t, j], check_target=not fresh_limit)
            if hit is not None:
                found = (t, *hit)
                break
            if not fresh_limit:
                extreme = next_extreme(side, extreme, high=h[t, j], low=lo[t, j])
        reason = int(trade[kernel.T_REASON])
        if reason in reasons:
            seen.add(reasons[reason])
            slip = 1 - side.sign * config.slippage
            assert found is not None
            assert found[0] == exit_bar and found[1] * slip == trade[kernel.T_EXIT_PRICE]
            assert found[2] == OrderIntentKind(kernel.EXIT_REASONS[reason])
        else:  # a signal exit at the open, or still open at the end: no stop fired before
            assert found is None or (reason == kernel.SIGNAL and found[0] == exit_bar)
    assert seen == {"stop", "trail", "target"}


def test_stop_levels_by_hand() -> None:
    config = BacktestConfig(stop_loss=0.05, atr_stop=2.0, atr_trailing=3.0, take_profit=0.1)
    # long at 100, entry ATR 3 -> ATR stop 94 under the 95 stop-loss; peak 110, previous ATR 4 -> 98 trailing
    levels = stop_levels(
        side=OrderSide.BUY, entry_price=100.0, extreme=110.0, entry_atr=3.0, prev_atr=4.0, config=config
    )
    assert (levels.stop, levels.stop_kind, levels.target) == (98.0, OrderIntentKind.TRAILING_STOP, pytest.approx(110.0))
    levels = stop_levels(
        side=OrderSide.BUY, entry_price=100.0, extreme=100.0, entry_atr=3.0, prev_atr=None, config=config
    )
    assert (levels.stop, levels.stop_kind) == (95.0, OrderIntentKind.STOP_LOSS)
    assert stop_exit(levels, open_=99.0, high=111.0, low=94.0) == (95.0, OrderIntentKind.STOP_LOSS)  # stop first
    assert stop_exit(levels, open_=93.0, high=94.0, low=90.0) == (93.0, OrderIntentKind.STOP_LOSS)  # a gap
    assert stop_exit(levels, open_=99.0, high=111.0, low=96.0) == (pytest.approx(110.0), OrderIntentKind.TAKE_PROFIT)
    assert stop_exit(levels, open_=99.0, high=111.0, low=96.0, check_target=False) is None
    # short at 100: ATR stop 106 vs stop-loss 105; the trough 90 plus 3 * 4 = 102 is the tightest
    levels = stop_levels(
        side=OrderSide.SELL, entry_price=100.0, extreme=90.0, entry_atr=3.0, prev_atr=4.0, config=config
    )
    assert (levels.stop, levels.stop_kind, levels.target) == (102.0, OrderIntentKind.TRAILING_STOP, pytest.approx(90.0))
    none = stop_levels(
        side=OrderSide.BUY, entry_price=100.0, extreme=100.0, entry_atr=None, prev_atr=None, config=BacktestConfig()
    )
    assert none.stop is None and none.target is None
    assert stop_exit(none, open_=1.0, high=1000.0, low=0.5) is None
    assert next_extreme(OrderSide.BUY, 100.0, high=104.0, low=90.0) == 104.0
    assert next_extreme(OrderSide.SELL, 100.0, high=104.0, low=90.0) == 90.0


def test_limit_helpers_by_hand() -> None:
    assert limit_price(OrderSide.BUY, 200.0, 0.005) == pytest.approx(199.0)
    assert limit_price(OrderSide.SELL, 200.0, 0.005) == pytest.approx(201.0)
    assert limit_fill_price(OrderSide.BUY, 99.0, 100.0, 101.0, 99.0) is None  # touch
    assert limit_fill_price(OrderSide.BUY, 99.0, 100.0, 101.0, 98.9) == 99.0
    assert limit_fill_price(OrderSide.BUY, 99.0, 98.0, 99.5, 97.0) == 98.0
    assert limit_fill_price(OrderSide.SELL, 101.0, 100.0, 101.0, 99.0) is None
    assert limit_fill_price(OrderSide.SELL, 101.0, 100.0, 101.1, 99.0) == 101.0
    assert limit_fill_price(OrderSide.SELL, 101.0, 102.0, 103.0, 101.5) == 102.0


# ------------------------------------------------------------------------------------------ ATR
def test_wilder_atr_by_hand() -> None:
    high = np.array([10.0, 11.0, 12.0, 11.0, 14.0])
    low = np.array([8.0, 9.0, 9.0, 10.0, 11.0])
    close = np.array([9.0, 10.0, 11.0, 10.0, 13.0])
    # TR: -, max(2, 2, 0) = 2, max(3, 2, 1) = 3, max(1, 0, 1) = 1, max(3, 4, 1) = 4
    # window 2: first ATR at the third candle (2 + 3) / 2 = 2.5; then (2.5 + 1) / 2 = 1.75; (1.75 + 4) / 2 = 2.875
    np.testing.assert_array_equal(wilder_atr(high, low, close, window=2), [np.nan, np.nan, 2.5, 1.75, 2.875])
    # window 3: (2 + 3 + 1) / 3 = 2 at the fourth; then (2 * 2 + 4) / 3
    np.testing.assert_allclose(wilder_atr(high, low, close, window=3), [np.nan] * 3 + [2.0, 8.0 / 3.0])


def test_wilder_atr_skips_missing_candles_and_carries_the_last_value() -> None:
    high = np.array([[10.0, 10.0], [11.0, np.nan], [12.0, 11.0], [11.0, 12.0], [14.0, 11.0]])
    low = np.array([[8.0, 8.0], [9.0, np.nan], [9.0, 9.0], [10.0, 9.0], [11.0, 10.0]])
    close = np.array([[9.0, 9.0], [10.0, np.nan], [11.0, 10.0], [10.0, 11.0], [13.0, 10.0]])
    out = wilder_atr(high, low, close, window=2)
    # column 1 without its second row: candles (10,8,9), (11,9,10), (12,9,11), (11,10,10) as in the docstring
    np.testing.assert_array_equal(out[:, 1], [np.nan, np.nan, np.nan, 2.5, 1.75])
    np.testing.assert_array_equal(out[:, 0], wilder_atr(high[:, 0], low[:, 0], close[:, 0], window=2))
    # column 0 without its fourth candle: it carries 2.5; the fifth's TR is max(3, |14 - 11|, |11 - 11|) = 3
    gap = np.where(np.arange(5)[:, None] == 3, np.nan, high)
    np.testing.assert_array_equal(wilder_atr(gap, low, close, window=2)[:, 0], [np.nan, np.nan, 2.5, 2.5, 2.75])


def test_wilder_atr_equals_the_reference_and_the_incremental_one() -> None:
    from conftest import sample

    candles = sample("coinbase__BTC-USD__1h")
    h, lo, c = (candles[col].to_numpy() for col in ("high", "low", "close"))
    out = wilder_atr(h, lo, c, window=14)
    np.testing.assert_allclose(out, atr_reference(h, lo, c, 14), rtol=1e-12)
    live = WilderAtr(window=14)
    stepped = [live.update(high=a, low=b, close=d) for a, b, d in zip(h, lo, c, strict=True)]
    assert [np.nan if v is None else v for v in stepped][14:] == out[14:].tolist()  # bit for bit
    assert all(v is None for v in stepped[:14]) and np.isnan(out[:14]).all()


def test_backtest_reads_the_atr_of_the_configured_window() -> None:
    rows = [
        (100, 101, 99, 100, 0),
        (100, 102, 100, 101, 0),  # TR 2
        (101, 103, 99, 100, 0),  # TR 4
        (100, 101, 99, 100, ENTER_LONG),  # TR 2; window 2: ATR (3 + 2) / 2 = 2.5; window 3: (2 + 4 + 2) / 3 = 8/3
        (100, 101, 97.4, 100, 0),  # entry 100: stop 97.5 (window 2) is hit, 100 - 8/3 = 97.33 (window 3) is not
        (100, 100, 90, 95, 0),
    ]
    candles = pl.DataFrame(
        {
            "ts": [i * H for i in range(len(rows))],
            "symbol": ["X"] * len(rows),
            **{name: [float(r[i]) for r in rows] for i, name in enumerate(("open", "high", "low", "close"))},
            "signal": [r[4] for r in rows],
        },
        schema_overrides={"signal": pl.Int8},
    )
    for window, bar, price in [(2, 4, 97.5), (3, 5, 100 - 8 / 3)]:
        config = BacktestConfig(fee_rate=0.0, atr_stop=1.0, atr_window=window)
        trades = run_backtest(candles, config, timeframe="1h").trades
        assert trades["exit_reason"].to_list() == ["stop_loss"]
        assert trades["exit_ts"][0] == bar * H and trades["exit_price"][0] == pytest.approx(price)


@pytest.mark.parametrize("module", [kernel, kernel_plain], ids=lambda m: m.__name__)
def test_the_kernel_digests_follow_fills_py(module) -> None:
    digest = hashlib.sha256(Path(fills_module.__file__).read_bytes()).hexdigest()
    name = Path(module.__file__).name
    assert module.FILLS_SHA256 == digest, (
        f"tradeloop/backtest/fills.py changed, and numba's cache of a kernel only sees its own file: "
        f'set FILLS_SHA256 = "{digest}" in tradeloop/backtest/{name} so it recompiles'
    )


@pytest.mark.parametrize("module", [kernel, kernel_plain], ids=lambda m: m.__name__)
def test_the_kernel_digests_follow_kernel_exits_py(module) -> None:
    digest = hashlib.sha256(Path(kernel_exits.__file__).read_bytes()).hexdigest()
    name = Path(module.__file__).name
    assert module.EXITS_SHA256 == digest, (
        f"tradeloop/backtest/kernel_exits.py changed, and numba's cache of a kernel only sees its own file: "
        f'set EXITS_SHA256 = "{digest}" in tradeloop/backtest/{name} so it recompiles'
    )


def test_atr_and_limit_runs_split_across_threads_equal_one_pass() -> None:
    rng = np.random.default_rng(5)
    o, h, lo, c = random_bars(rng, 300, 7, 0.25)
    signal = rng.choice([0, ENTER_LONG, ENTER_SHORT, EXIT_LONG], (300, 7), p=[0.94, 0.02, 0.02, 0.02])
    config = BacktestConfig(
        cash_sharing=False, atr_stop=1.0, atr_trailing=2.0, entry_order="limit", limit_offset=0.001, limit_ttl_bars=2
    )
    one = simulate_arrays(prices(o, h, lo, c, signal), config, threads=1)
    many = simulate_arrays(prices(o, h, lo, c, signal), config, threads=3)
    assert len(one[1]) > 30
    np.testing.assert_array_equal(one[0], many[0])
    by_symbol = [t[np.lexsort((t[:, kernel.T_ENTRY_BAR], t[:, kernel.T_SYMBOL]))] for t in (one[1], many[1])]
    np.testing.assert_array_equal(*by_symbol)  # the blocks list their trades block by block
    for a, b in zip(one[2:], many[2:], strict=True):
        np.testing.assert_array_equal(a, b)
