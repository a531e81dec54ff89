"""Backtest engine benchmark: tradeloop vs vectorbt vs a plain numpy reference.

Workload (the same for every engine): SMA(10, 30) crossover, long only, fills at the next
bar's open, 0.1% fee per side, full-equity sizing, one independent portfolio per symbol.
Sizes: 1x100k, 100x100k and 50x1M synthetic 1m candles, plus a real file from
../shared/data/real when it is there. Each engine runs in its own process so its peak
memory (max RSS, input arrays included) is its own. Timing covers signals + simulation
(not data generation) and is the best of ``--repeat`` runs after a warm-up.

Run:  .venv/bin/python bench/backtest_vs_vectorbt.py            (needs the bench group)
      .venv/bin/python bench/backtest_vs_vectorbt.py --sizes 1x100000
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
REAL_FILE = ROOT.parent / "shared" / "data" / "real" / "binance__BTC-USDT__5m.parquet"
FEE, FAST, SLOW, CASH = 0.001, 10, 30, 10_000.0


def synthetic(bars: int, symbols: int, seed: int = 7) -> tuple[np.ndarray, ...]:
    """Random-walk 1m candles, (bars x symbols) C-order float64 arrays."""
    rng = np.random.default_rng(seed)
    close = np.empty((bars, symbols))
    for j in range(symbols):  # per column keeps peak memory at one temporary column
        close[:, j] = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.001, bars)))
    open_ = np.empty_like(close)
    open_[0] = close[0]
    open_[1:] = close[:-1] * (1.0 + rng.normal(0.0, 0.0002, (bars - 1, symbols)))
    spread = np.abs(rng.normal(0.0, 0.0005, (bars, symbols)))
    high = np.maximum(open_, close) * (1.0 + spread)
    low = np.minimum(open_, close) * (1.0 - spread)
    return open_, high, low, close


def real(path: Path) -> tuple[np.ndarray, ...]:
    import polars as pl

    frame = pl.read_parquet(path)
    return tuple(frame[c].to_numpy().reshape(-1, 1).copy() for c in ("open", "high", "low", "close"))


def load(size: str) -> tuple[np.ndarray, ...]:
    if size == "real":
        return real(REAL_FILE)
    symbols, bars = (int(x) for x in size.split("x"))
    return synthetic(bars, symbols)


# ---------------------------------------------------------------------------- engines
def run_tradeloop(open_, high, low, close) -> tuple[int, float]:
    from tradeloop.backtest import BacktestConfig, PriceArrays, simulate_arrays
    from tradeloop.strategies import SmaCross

    signal = SmaCross(fast=FAST, slow=SLOW).wide_signals({"close": close})
    prices = PriceArrays(
        ts=np.arange(close.shape[0]),
        symbols=tuple(map(str, range(close.shape[1]))),
        open=open_,
        high=high,
        low=low,
        close=close,
        signal=signal,
    )
    config = BacktestConfig(init_cash=CASH, fee_rate=FEE, cash_sharing=False)
    equity, trades, *_ = simulate_arrays(prices, config)
    return len(trades), float(equity[-1].sum())


def run_vectorbt(open_, high, low, close) -> tuple[int, float]:
    import pandas as pd
    import vectorbt as vbt

    c = pd.DataFrame(close)
    fast = vbt.MA.run(c, FAST, short_name="fast")
    slow = vbt.MA.run(c, SLOW, short_name="slow")
    entries = fast.ma_crossed_above(slow).shift(1, fill_value=False).to_numpy()
    exits = fast.ma_crossed_below(slow).shift(1, fill_value=False).to_numpy()
    pf = vbt.Portfolio.from_signals(c, entries, exits, price=open_, fees=FEE, init_cash=CASH, size=np.inf)
    return int(np.asarray(pf.trades.count()).sum()), float(np.asarray(pf.final_value()).sum())


def run_reference(open_, high, low, close) -> tuple[int, float]:
    from tradeloop.backtest.reference import sma_cross_reference

    trades, equity = 0, 0.0
    for j in range(close.shape[1]):
        n, e = sma_cross_reference(open_[:, j], close[:, j], fast=FAST, slow=SLOW, fee=FEE, init_cash=CASH)
        trades += n
        equity += e
    return trades, equity


ENGINES = {"tradeloop": run_tradeloop, "vectorbt": run_vectorbt, "reference": run_reference}


def worker(engine: str, size: str, repeat: int) -> None:
    data = load(size)
    run = ENGINES[engine]
    if engine != "reference":
        run(*(a[:2000].copy() for a in data))  # warm-up: JIT compilation / caches
    best = float("inf")
    for _ in range(repeat if engine != "reference" else 1):
        started = time.perf_counter()
        trades, equity = run(*data)
        best = min(best, time.perf_counter() - started)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    candles = data[0].size
    print(
        json.dumps(
            {
                "engine": engine,
                "size": size,
                "seconds": best,
                "candles": candles,
                "trades": trades,
                "final_equity": equity,
                "peak_mb": peak_mb,
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="*", default=["1x100000", "100x100000", "50x1000000", "real"])
    parser.add_argument("--engines", nargs="*", default=list(ENGINES))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--worker", nargs=2, metavar=("ENGINE", "SIZE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(*args.worker, args.repeat)
    sizes = [s for s in args.sizes if s != "real" or REAL_FILE.exists()]
    if "real" in args.sizes and "real" not in sizes:
        print(f"(real file {REAL_FILE.name} not found beside the repo: skipped)")
    rows = []
    for size in sizes:
        results = {}
        for engine in args.engines:
            out = subprocess.run(
                [sys.executable, __file__, "--worker", engine, size, "--repeat", str(args.repeat)],
                capture_output=True,
                text=True,
                check=True,
            )
            results[engine] = json.loads(out.stdout.strip().splitlines()[-1])
        rows.append(results)
        _print_size(size, results)
    _print_table(rows)


def _print_size(size: str, results: dict) -> None:
    print(f"  done {size}: " + ", ".join(f"{e} {r['seconds']:.3f}s" for e, r in results.items()), flush=True)


def _print_table(rows: list[dict]) -> None:
    head = (
        f"{'size':>11} {'engine':>10} {'seconds':>9} {'Mcandles/s':>11} {'vs vbt':>7} {'peak MB':>8} "
        f"{'trades':>8} {'final equity':>18} {'rel diff vs ref':>16}"
    )
    print("\nSMA(10,30) crossover, long only, next-open fills, 0.1% fee/side, full equity\n" + head)
    print("-" * len(head))
    for results in rows:
        vbt = results.get("vectorbt")
        ref = results.get("reference")
        for engine, r in results.items():
            speed = r["candles"] / r["seconds"] / 1e6
            vs = f"{vbt['seconds'] / r['seconds']:.1f}x" if vbt else "-"
            diff = (
                (
                    f"{abs(r['final_equity'] / ref['final_equity'] - 1):.1e}"
                    + ("" if r["trades"] == ref["trades"] else " (trades differ)")
                )
                if ref
                else "-"
            )
            print(
                f"{r['size']:>11} {engine:>10} {r['seconds']:>9.3f} {speed:>11.2f} {vs:>7} {r['peak_mb']:>8.0f} "
                f"{r['trades']:>8} {r['final_equity']:>18.6f} {diff:>16}"
            )


if __name__ == "__main__":
    main()
