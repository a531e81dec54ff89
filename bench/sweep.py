"""Sweep benchmark: tradeloop.backtest.sweep vs vectorbt's broadcasting of the same grid.

Workload (the same for both engines): 100 SMA crossover pairs (fast in 5..50, slow in
20..200, fast < slow, drawn once with a fixed seed) x 20 symbols x 100k synthetic 1m
candles (a random walk, ``backtest_vs_vectorbt.synthetic``: scale, not realism), long only,
fills at the next bar's open, 0.1% fee per side, full-equity sizing, one portfolio per
(pair, symbol): 2,000 portfolios, 200M candle-portfolio steps.

- tradeloop: one ``sweep("sma_cross", pairs, candles, config, timeframe="1m")`` call (each SMA
  window once per symbol, then every portfolio in one compiled parallel pass, metrics out).
- vectorbt: ``vbt.MA.run`` with the lists of fast and slow windows, ``ma_crossed_above/below``,
  one ``vbt.Portfolio.from_signals`` over the 2,000 columns (signals shifted one bar, filled
  at the open: the conventions of ``bench/backtest_vs_vectorbt.py``), trade counts and final values.

Each engine runs in its own process, so its peak memory (max RSS, input arrays included) is
its own; timing covers the engine's call (not data generation) after a warm-up on a small
slice (JIT caches). Correctness: on a sample of combinations, trade counts and final equity
must equal ``tradeloop.backtest.reference.sma_cross_reference`` to relative 1e-9; the final
equity of every combination is compared with vectorbt's too.

Run:  nice -n 19 .venv/bin/python bench/sweep.py                (needs the bench group: vectorbt)
      nice -n 19 .venv/bin/python bench/sweep.py --bars 20000 --symbols 4 --pairs 20
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from backtest_vs_vectorbt import CASH, FEE, synthetic


def pairs(count: int, seed: int = 11) -> list[tuple[int, int]]:
    """``count`` distinct (fast, slow) pairs, fast in 5..50, slow in 20..200, fast < slow, sorted."""
    rng = np.random.default_rng(seed)
    chosen: set[tuple[int, int]] = set()
    while len(chosen) < count:
        fast, slow = int(rng.integers(5, 51)), int(rng.integers(20, 201))
        if fast < slow:
            chosen.add((fast, slow))
    return sorted(chosen)


def candles_frame(open_, high, low, close):
    import polars as pl

    bars, symbols = close.shape
    return pl.DataFrame(
        {
            "ts": np.tile(np.arange(bars, dtype=np.int64) * 60_000, symbols),
            "symbol": np.repeat([f"S{j:02d}" for j in range(symbols)], bars),
            "open": open_.T.reshape(-1),
            "high": high.T.reshape(-1),
            "low": low.T.reshape(-1),
            "close": close.T.reshape(-1),
        }
    )


# ---------------------------------------------------------------------------- engines
def run_tradeloop(data, grid) -> tuple[np.ndarray, np.ndarray, float]:
    """(trades, final equity) per combination in (pair, symbol) order, and the seconds of the call."""
    from tradeloop.backtest import BacktestConfig, sweep

    candles = candles_frame(*data)
    config = BacktestConfig(init_cash=CASH, fee_rate=FEE)
    params = [{"fast": f, "slow": s} for f, s in grid]
    started = time.perf_counter()
    result = sweep("sma_cross", params, candles, config, timeframe="1m")
    seconds = time.perf_counter() - started
    return result["trades"].to_numpy(), result["final_equity"].to_numpy(), seconds


def run_vectorbt(data, grid) -> tuple[np.ndarray, np.ndarray, float]:
    import pandas as pd
    import vectorbt as vbt

    open_, _high, _low, close = data
    c = pd.DataFrame(close)
    price = np.tile(open_, (1, len(grid)))  # the fill price of every (pair, symbol) column, in MA.run's order
    started = time.perf_counter()
    fast = vbt.MA.run(c, [f for f, _ in grid], short_name="fast")
    slow = vbt.MA.run(c, [s for _, s in grid], short_name="slow")
    entries = fast.ma_crossed_above(slow).shift(1, fill_value=False).to_numpy()
    exits = fast.ma_crossed_below(slow).shift(1, fill_value=False).to_numpy()
    pf = vbt.Portfolio.from_signals(fast.close, entries, exits, price=price, fees=FEE, init_cash=CASH, size=np.inf)
    trades = np.asarray(pf.trades.count())
    final = np.asarray(pf.final_value())
    return trades, final, time.perf_counter() - started


ENGINES = {"tradeloop": run_tradeloop, "vectorbt": run_vectorbt}


def worker(engine: str, bars: int, symbols: int, n_pairs: int, out: Path) -> None:
    data = synthetic(bars, symbols)
    grid = pairs(n_pairs)
    run = ENGINES[engine]
    run(tuple(a[:3000, :2].copy() for a in data), grid[:3])  # warm-up: JIT compilation / caches
    trades, final, seconds = run(data, grid)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    np.savez(out, trades=trades, final=final)
    print(json.dumps({"engine": engine, "seconds": seconds, "peak_mb": peak_mb}))


def reference_check(data, grid, trades: np.ndarray, final: np.ndarray, sample: int) -> float:
    """Largest relative final-equity difference against the numpy reference on ``sample``
    combinations (raises on a trade count that differs)."""
    from tradeloop.backtest.reference import sma_cross_reference

    open_, _high, _low, close = data
    symbols = close.shape[1]
    rng = np.random.default_rng(3)
    worst = 0.0
    for c in rng.choice(len(grid) * symbols, size=min(sample, len(grid) * symbols), replace=False):
        p, j = divmod(int(c), symbols)
        n, e = sma_cross_reference(open_[:, j], close[:, j], fast=grid[p][0], slow=grid[p][1], fee=FEE, init_cash=CASH)
        if n != trades[c]:
            raise SystemExit(f"pair {grid[p]} symbol {j}: {trades[c]} trades, the reference {n}")
        worst = max(worst, abs(final[c] / e - 1.0))
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bars", type=int, default=100_000)
    parser.add_argument("--symbols", type=int, default=20)
    parser.add_argument("--pairs", type=int, default=100)
    parser.add_argument("--sample", type=int, default=20, help="combinations checked against the numpy reference")
    parser.add_argument("--engines", nargs="*", default=list(ENGINES))
    parser.add_argument("--worker", metavar="ENGINE", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args.worker, args.bars, args.symbols, args.pairs, args.out)
    results, arrays = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for engine in args.engines:
            out = Path(tmp) / f"{engine}.npz"
            cmd = [sys.executable, __file__, "--worker", engine, "--out", str(out)]
            cmd += ["--bars", str(args.bars), "--symbols", str(args.symbols), "--pairs", str(args.pairs)]
            done = subprocess.run(cmd, capture_output=True, text=True, check=True)
            results[engine] = json.loads(done.stdout.strip().splitlines()[-1])
            with np.load(out) as saved:
                arrays[engine] = (saved["trades"], saved["final"])
            print(f"  done {engine}: {results[engine]['seconds']:.2f}s", flush=True)
    data = synthetic(args.bars, args.symbols)
    grid = pairs(args.pairs)
    _print_table(args, results, arrays, data, grid)


def _print_table(args, results: dict, arrays: dict, data, grid) -> None:
    combos = len(grid) * args.symbols
    print(
        f"\nsweep: {len(grid)} SMA pairs x {args.symbols} symbols x {args.bars} 1m bars = {combos} portfolios "
        f"(synthetic random walk), long only, next-open fills, {FEE:.1%} fee/side, full equity"
    )
    head = f"{'engine':>10} {'seconds':>9} {'vs vbt':>7} {'peak MB':>8} {'trades':>10} {'sum final equity':>20}"
    head += f" {'ref check':>24}"
    print(head + "\n" + "-" * len(head))
    vbt = results.get("vectorbt")
    for engine, r in results.items():
        trades, final = arrays[engine]
        check = "-"
        if engine == "tradeloop":
            worst = reference_check(data, grid, trades, final, args.sample)
            check = f"{args.sample} combos, max rel {worst:.1e}"
        vs = f"{vbt['seconds'] / r['seconds']:.1f}x" if vbt else "-"
        print(
            f"{engine:>10} {r['seconds']:>9.3f} {vs:>7} {r['peak_mb']:>8.0f} {int(trades.sum()):>10} "
            f"{float(final.sum()):>20.4f} {check:>24}"
        )
    if {"tradeloop", "vectorbt"} <= arrays.keys():
        ours, theirs = arrays["tradeloop"][1], arrays["vectorbt"][1]
        worst = float(np.max(np.abs(ours / theirs - 1)))
        print(f"final equity, every combination, tradeloop vs vectorbt: max rel diff {worst:.1e}")


if __name__ == "__main__":
    main()
