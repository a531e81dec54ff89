"""Single-series backtest: tradeloop against a fused compiled loop doing the same work.

Workload: SMA(10, 30) crossover, long only, fills at the next bar's open, 0.1% fee per
side, full-equity sizing, one portfolio; signals plus simulation. The fused loop below is
written here, in one numba function (running sums, the crossing rule, the fills), as the
floor a single-series backtest can reach; tradeloop runs its public wide-array path
(``SmaCross.wide_signals`` then ``simulate_arrays``) and its frame path
(``backtest_strategy`` on a polars frame, ledger and equity curve built). Every engine's
trades and final equity are checked against the numpy reference
(``tradeloop.backtest.reference.sma_cross_reference``).

Inputs: 1x100k synthetic 1m bars, and one real 1m file (``../shared/data/real``, the FTX
BTC-PERP 1m file or a Bittrex 1m one; skipped with a note when absent). Times are the best
of ``--repeat`` runs after a warm-up (compilation excluded), ``fused`` and ``wide`` taking
turns run by run so that a shared machine's load weighs on both alike (``frame``: best of
``repeat // 5``, after them). Target: tradeloop's wide path within 2x of the fused loop.

Run:  nice -n 19 .venv/bin/python bench/single_series.py [--repeat 50]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import numba as nb
import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
REAL_DIR = ROOT.parent / "shared" / "data" / "real"
REAL_FILES = ("ftx__BTC-USD-PERP__1m.parquet", "bittrex__ETH-BTC__1m.parquet", "bittrex__LTC-BTC__1m.parquet")
FEE, FAST, SLOW, CASH, TOL = 0.001, 10, 30, 10_000.0, 1e-12


@nb.njit(cache=True, nogil=True)
def fused_sma_cross(open_, close, fast, slow, fee, init_cash, tol):  # pragma: no cover - compiled
    """SMA(fast) / SMA(slow) - 1 crossings (ties within ``tol`` do nothing), long only, next-open
    fills, a fee per side, full equity: (trades incl. an open one, final equity). One pass."""
    n = close.size
    sum_f = 0.0
    sum_s = 0.0
    side = 0
    pending = 0
    cash = init_cash
    qty = 0.0
    trades = 0
    for t in range(n):
        if pending == 1 and qty == 0.0:
            price = open_[t]
            qty = cash / (price * (1.0 + fee))
            cash -= qty * price * (1.0 + fee)
            trades += 1
        elif pending == -1 and qty > 0.0:
            cash += qty * open_[t] * (1.0 - fee)
            qty = 0.0
        pending = 0
        x = close[t]
        sum_f += x
        sum_s += x
        if t >= fast:
            sum_f -= close[t - fast]
        if t >= slow:
            sum_s -= close[t - slow]
        if t + 1 < slow:
            continue
        score = (sum_f * slow) / (sum_s * fast) - 1.0
        now = 1 if score > tol else (-1 if score < -tol else 0)
        if now != 0:
            if now == 1 and side == -1:
                pending = 1
            elif now == -1 and side == 1:
                pending = -1
            side = now
    return trades, cash + qty * close[n - 1]


def synthetic(bars: int, seed: int = 7) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Random-walk 1m candles of one symbol: ts (ms), open, high, low, close (float64)."""
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.001, bars)))
    open_ = np.empty_like(close)
    open_[0] = close[0]
    open_[1:] = close[:-1] * (1.0 + rng.normal(0.0, 0.0002, bars - 1))
    spread = np.abs(rng.normal(0.0, 0.0005, bars))
    ts = np.arange(bars, dtype=np.int64) * 60_000
    return ts, open_, np.maximum(open_, close) * (1.0 + spread), np.minimum(open_, close) * (1.0 - spread), close


def real_file() -> Path | None:
    return next((REAL_DIR / name for name in REAL_FILES if (REAL_DIR / name).exists()), None)


def load_real(path: Path) -> tuple[np.ndarray, ...]:
    frame = pl.read_parquet(path).sort("ts")
    columns = ("ts", "open", "high", "low", "close")
    return tuple(frame[c].to_numpy().astype(np.int64 if c == "ts" else np.float64) for c in columns)


# ---------------------------------------------------------------------------- engines: (trades, final equity)
def run_fused(ts, open_, high, low, close) -> tuple[int, float]:
    trades, equity = fused_sma_cross(open_, close, FAST, SLOW, FEE, CASH, TOL)
    return int(trades), float(equity)


def run_wide(ts, open_, high, low, close) -> tuple[int, float]:
    from tradeloop.backtest import BacktestConfig, PriceArrays, simulate_arrays
    from tradeloop.strategies import SmaCross

    columns = {"close": close.reshape(-1, 1)}
    signal = SmaCross(fast=FAST, slow=SLOW).wide_signals(columns)
    prices = PriceArrays(
        ts=ts,
        symbols=("X",),
        open=open_.reshape(-1, 1),
        high=high.reshape(-1, 1),
        low=low.reshape(-1, 1),
        close=columns["close"],
        signal=signal,
    )
    equity, trades, *_ = simulate_arrays(prices, BacktestConfig(init_cash=CASH, fee_rate=FEE, cash_sharing=False))
    return len(trades), float(equity[-1, 0])


def run_frame(ts, open_, high, low, close) -> tuple[int, float]:
    from tradeloop.backtest import BacktestConfig, backtest_strategy
    from tradeloop.strategies import SmaCross

    frame = pl.DataFrame({"ts": ts, "open": open_, "high": high, "low": low, "close": close})
    config = BacktestConfig(init_cash=CASH, fee_rate=FEE, cash_sharing=False)
    result = backtest_strategy(SmaCross(fast=FAST, slow=SLOW), frame, config, timeframe="1m")
    return result.trades.height, result.final_equity


def run_reference(ts, open_, high, low, close) -> tuple[int, float]:
    from tradeloop.backtest.reference import sma_cross_reference

    return sma_cross_reference(open_, close, fast=FAST, slow=SLOW, fee=FEE, init_cash=CASH)


ENGINES: dict[str, Callable[..., tuple[int, float]]] = {
    "fused": run_fused,
    "wide": run_wide,
    "frame": run_frame,
}


def best_of(
    engines: dict[str, Callable[..., tuple[int, float]]], data: tuple[np.ndarray, ...], repeat: int
) -> dict[str, tuple[float, tuple]]:
    """Best time and output of each engine, the engines taking turns (one run each per round) so
    that load coming and going on a shared machine falls on all of them alike."""
    outs = {}
    for name, run in engines.items():
        run(*(a[:2000].copy() for a in data))  # warm-up: compilation, caches
        outs[name] = run(*data)
    best = dict.fromkeys(engines, float("inf"))
    for _ in range(repeat):
        for name, run in engines.items():
            started = time.perf_counter()
            outs[name] = run(*data)
            best[name] = min(best[name], time.perf_counter() - started)
    return {name: (best[name], outs[name]) for name in engines}


def bench(label: str, data: tuple[np.ndarray, ...], repeat: int) -> dict[str, float]:
    ref_trades, ref_equity = run_reference(*data)
    print(f"\n{label}: {data[0].size:,} bars; reference {ref_trades} trades, final equity {ref_equity:.6f}")
    print(f"{'engine':>8} {'ms':>9} {'vs fused':>9} {'trades':>7} {'rel diff vs ref':>16}")
    # fused and wide take turns; frame (polars frames, ~50x the others) alone after them, as its
    # allocations would evict the others' arrays between their runs
    results = best_of({name: ENGINES[name] for name in ("fused", "wide")}, data, repeat)
    results |= best_of({"frame": ENGINES["frame"]}, data, max(3, repeat // 5))
    for name, (seconds, (trades, equity)) in results.items():
        same = "" if trades == ref_trades else " (trades differ)"
        ratio = seconds / results["fused"][0]
        print(f"{name:>8} {seconds * 1e3:>9.3f} {ratio:>8.2f}x {trades:>7} {abs(equity / ref_equity - 1):>16.1e}{same}")
    return {name: seconds for name, (seconds, _) in results.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bars", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=50)
    args = parser.parse_args()
    print("SMA(10,30) crossover, long only, next-open fills, 0.1% fee/side, full equity; best of", args.repeat)
    bench(f"synthetic 1x{args.bars}", synthetic(args.bars), args.repeat)
    path = real_file()
    if path is None:
        print(f"\n(no real 1m file among {', '.join(REAL_FILES)} in ../shared/data/real: skipped)")
    else:
        bench(f"real {path.name}", load_real(path), args.repeat)
    print("\ntarget: wide within 2.00x of fused")


if __name__ == "__main__":
    main()
