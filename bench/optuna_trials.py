"""optuna trial throughput: the thresholds study on the bundled sample, without and with reuse.

The study is the pipeline's (``pipelines.resources``: coinbase BTC-USD and ETH-USD 4h, the
bundled sample; ``sma_cross``; the default ``TuningConfig`` and retrain policy), run twice in
one process on fresh journal files: ``reuse=False`` (every trial computes its features,
signals and threshold fits anew, as before the work cache) and ``reuse=True`` (trials share
one bounded ``tradeloop.features.cache.WorkCache``). A warm-up study on a short slice runs
first so neither timed run pays numba's compilation. Prints trials per minute of each, the
speed-up, and whether both studies scored every trial the same (they must).

Run:  nice -n 19 .venv/bin/python bench/optuna_trials.py [--trials 8] [--years 4]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import polars as pl

from tradeloop.research.tuning import TuningConfig, tune

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data" / "sample"
SYMBOLS = ("BTC-USD", "ETH-USD")
YEAR_MS = 365 * 86_400_000


def sample_candles(years: float | None) -> pl.DataFrame:
    frames = [pl.read_parquet(SAMPLE / f"coinbase__{s}__4h.parquet").with_columns(symbol=pl.lit(s)) for s in SYMBOLS]
    candles = pl.concat(frames).sort("symbol", "ts")
    if years is not None:
        candles = candles.filter(pl.col("ts") >= candles["ts"].max() - int(years * YEAR_MS))
    return candles


def timed_study(candles: pl.DataFrame, config: TuningConfig, *, reuse: bool) -> tuple[float, list]:
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        result = tune(candles, config=config, timeframe="4h", study_dir=Path(tmp), reuse=reuse)
        seconds = time.perf_counter() - started
        return seconds, [(t.params, t.value, t.state.name) for t in result.study.trials]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--years", type=float, default=None, help="the last N years only (default: all)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    candles = sample_candles(args.years)
    config = TuningConfig(n_trials=args.trials, seed=args.seed)
    timed_study(sample_candles(0.5), config.model_copy(update={"n_trials": 1, "n_splits": 2}), reuse=True)  # warm-up
    print(
        f"thresholds study: {', '.join(SYMBOLS)} 4h, {candles.height:,} candles, {args.trials} trials, seed {args.seed}"
    )
    before, trials_before = timed_study(candles, config, reuse=False)
    after, trials_after = timed_study(candles, config, reuse=True)
    for label, seconds in (("without reuse", before), ("with reuse", after)):
        print(f"  {label:>13}: {seconds:8.1f} s  {args.trials / seconds * 60:7.2f} trials/min")
    print(f"  speed-up {before / after:.2f}x; same trials and values: {trials_before == trials_after}")


if __name__ == "__main__":
    main()
