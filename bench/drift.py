"""What a drift report costs, and what it says on real data.

On N Binance 1h pairs of ../shared/data/real (the longest histories ending at the common last
candle), an sma_cross champion is fitted on the events of each pair's first ``--train``
share of bars; the report then compares that training window with the rest
(``tradeloop.drift``: enrich + labels + PSI/KS per feature + Brier/hit rate). Printed: the
seconds of the windows (features, labels, probabilities) and of the statistics, the bars
judged, each feature's PSI and KS p-value, the calibration and the verdict under the default
bars. A real market's later months are another regime, so a drifted verdict is expected on
long live windows; the figure to read is which features move and by how much.

Run:  .venv/bin/python bench/drift.py [--pairs 50] [--train 0.7]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT.parent / "shared" / "data" / "real"
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=50)
    parser.add_argument("--train", type=float, default=0.7)
    args = parser.parse_args()

    import polars as pl

    from bench.pipeline import real_binance_1h
    from tradeloop.data.schema import CANDLE_COLUMNS
    from tradeloop.drift import DriftConfig, drift_report, drift_windows
    from tradeloop.research.walkforward import fit_threshold
    from tradeloop.strategies import get_strategy
    from tradeloop.thresholds import BarrierConfig, meta_dataset

    files = real_binance_1h()[: args.pairs]
    candles = pl.concat(
        pl.read_parquet(p).select(CANDLE_COLUMNS).with_columns(symbol=pl.lit(p.stem.split("__")[1])) for p in files
    ).sort("symbol", "ts")
    ts = candles["ts"].unique().sort()
    until = int(ts[int(len(ts) * args.train)])
    strategy, barriers = get_strategy("sma_cross"), BarrierConfig()
    started = time.perf_counter()
    events = meta_dataset(candles.filter(pl.col("ts") <= until), strategy, barriers=barriers)
    model = fit_threshold(events.filter(pl.col("t1") <= until), strategy, barriers, until=until)
    fit_s = time.perf_counter() - started

    started = time.perf_counter()
    windows = drift_windows(candles, model)
    windows_s = time.perf_counter() - started
    started = time.perf_counter()
    report = drift_report(windows, strategy="sma_cross", artifact="bench", config=DriftConfig())
    stats_s = time.perf_counter() - started

    print(f"{len(files)} Binance 1h pairs, {candles.height:,} bars; training window to bar {args.train:.0%} of time")
    print(f"fit (not part of a report) {fit_s:.1f} s; windows {windows_s:.2f} s; statistics {stats_s:.2f} s")
    print(f"training bars {windows.reference.height:,}, live bars {windows.live.height:,}")
    print(f"{'feature':<18}{'PSI':>8}{'KS p':>10}  drifted")
    for f in report.features:
        print(f"{f.feature:<18}{f.psi:>8.3f}{f.ks_pvalue:>10.2g}  {'yes' if f.drifted else ''}")
    cal = report.calibration
    print(
        f"closed outcomes: training {cal.reference_closed:,}, live {cal.closed:,}; Brier {cal.reference_brier:.4f} "
        f"-> {cal.brier:.4f}; hit rate {cal.hit_rate.realised:.3f} vs {cal.hit_rate.expected:.3f} expected "
        f"(z {cal.hit_rate.z:.2f})"
    )
    print("verdict:", "DRIFTED" if report.drifted else "not drifted", *report.reasons, sep="\n  ")


if __name__ == "__main__":
    main()
