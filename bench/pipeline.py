"""Research pipeline figures: the whole graph on the bundled sample (in-process executor),
and the overhead of one papermill execution inside an asset.

Overhead = wall time of running a notebook through papermill minus the time of the same
work called directly in Python (template notebook: one backtest on BTC-USD 4h).

Run:  .venv/bin/python bench/pipeline.py
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    import dagster as dg

    from pipelines.resources import RESEARCH_SYMBOLS, ExchangeResource, ResearchResource, StoresResource
    from pipelines.run import materialize_all
    from tradeloop.backtest import BacktestConfig, backtest_strategy
    from tradeloop.data import CandleLake, SeriesKey
    from tradeloop.performance import result_metrics
    from tradeloop.research.notebooks import notebook_path, run_notebook
    from tradeloop.strategies import SmaCross

    root = Path(tempfile.mkdtemp(prefix="tradeloop-bench-"))
    res = {"stores": StoresResource(data_dir=str(root)), "research": ResearchResource(),
           "exchange": ExchangeResource(mode="sample")}
    started = time.perf_counter()
    result = materialize_all(res, dg.DagsterInstance.ephemeral())
    if not result.success:
        raise SystemExit(f"research run {result.run_id} failed")
    total = time.perf_counter() - started
    steps = {n: result.asset_materializations_for_node(n)[0].metadata.get("notebook_seconds")
             for n in ("features", "thresholds", "backtest")}

    lake = CandleLake(root / "lake")
    params = {"lake_dir": str(lake.root), "output_dir": str(root / "scratch")}
    direct, via_papermill = [], []
    for i in range(3):
        t = time.perf_counter()
        candles = lake.read(SeriesKey("coinbase", "BTC-USD", "4h"))
        result_metrics(backtest_strategy(SmaCross(fast=10, slow=30), candles, BacktestConfig(), timeframe="4h"))
        direct.append(time.perf_counter() - t)
        run = run_notebook(notebook_path("template"), root / f"t{i}.ipynb", params, cwd=ROOT)
        via_papermill.append(run.seconds)

    print(f"whole research pipeline (candles x{len(RESEARCH_SYMBOLS)} -> features -> thresholds with optuna "
          f"({ResearchResource().n_trials} trials) -> backtest -> promotion), in-process executor: {total:.1f} s")
    for name, sec in steps.items():
        print(f"  notebook {name:<10} {sec.value:.1f} s")
    overhead = min(via_papermill) - min(direct)
    print(f"papermill notebook in-process: best {min(via_papermill):.2f} s vs the same work called directly "
          f"{min(direct):.3f} s -> overhead {overhead:.2f} s per notebook execution")


if __name__ == "__main__":
    main()
