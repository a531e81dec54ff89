"""Research pipeline figures: the whole graph (in-process executor) on the bundled sample,
or with ``--universe N`` on N Binance 1h pairs, and the overhead of one papermill execution
inside an asset.

``--universe N``: a temporary lake gets every Binance spot 1h pair of ../shared/data/real
(see its PROVENANCE.md: ``binance__<PAIR>__1h.parquet``, 2020-12-01 -> 2021-07-17) whose
history is the longest one ending at the common last candle; the research universe is then
the top N of them by dollar volume over the last 30 days (``ResearchResource(top_n=N)``,
picked inside the run with DuckDB), and the whole retrain runs on it: N ``candles``
partitions, features, thresholds (optuna), backtest, promotion. Those files are not part of
the repository; without them the option stops with a message.

Overhead = wall time of running a notebook through papermill minus the time of the same
work called directly in Python (template notebook: one backtest on BTC-USD 4h).

``--models``: the stronger models out of sample on the same ``--universe N`` pairs (default 50):
``ModelChoice(model="auto")`` on ``META_FEATURES`` (the default features), then with
``features="candidates", max_features=8`` (the engineered candidates, 8 kept per refit on its
own training events): each walks the logistic model (the default) and the boosted trees
forward on the same folds, gates both (two trials for the deflated Sharpe) and picks one.
The strategy is fixed (``SmaCross()`` and the default
barriers, the pipeline's tuning aside) so the classifiers alone differ; each row prints the
out-of-sample Sharpe, deflated Sharpe, return, drawdown, hit rate of the entries taken, Brier
score of the entries' probabilities, and the walk-forward's seconds.

Run:  .venv/bin/python bench/pipeline.py [--universe 50] [--models]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT.parent / "shared" / "data" / "real"  # beside the checkout; see its PROVENANCE.md
sys.path.insert(0, str(ROOT))


def real_binance_1h() -> list[Path]:
    """The Binance 1h pair files with the longest history that ends at the common last candle."""
    import polars as pl

    files = [p for p in sorted(REAL.glob("binance__*__1h.parquet")) if len(p.stem.split("__")) == 3]
    if not files:
        raise SystemExit(f"--universe needs the Binance 1h files of {REAL} (see its PROVENANCE.md); none found")
    spans = pl.DataFrame(
        [
            (p.name, *pl.read_parquet(p, columns=["ts"]).select(first=pl.min("ts"), last=pl.max("ts")).row(0))
            for p in files
        ],
        schema=["file", "first", "last"],
        orient="row",
    )
    last = spans.group_by("last").len().sort("len", "last", descending=True)["last"][0]
    ending = spans.filter(pl.col("last") == last)
    longest = ending.filter(pl.col("first") == ending["first"].min())
    return [REAL / name for name in longest["file"]]


def step_seconds(instance) -> dict[str, list[float]]:
    """Seconds of every step of every run in ``instance``, by step name (``candles``: one per
    partition run)."""
    import dagster as dg

    out: dict[str, list[float]] = defaultdict(list)
    for run in instance.get_runs():
        started: dict[str, float] = {}
        for entry in instance.all_logs(run.run_id):
            event = entry.dagster_event
            if event is None or not event.step_key:
                continue
            if event.event_type == dg.DagsterEventType.STEP_START:
                started[event.step_key] = entry.timestamp
            elif event.event_type in (dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE):
                out[event.step_key].append(entry.timestamp - started.pop(event.step_key, entry.timestamp))
    return out


def run_pipeline(universe: int | None) -> tuple[Path, float]:
    import dagster as dg

    from pipelines.resources import ExchangeResource, ResearchResource, StoresResource
    from pipelines.run import materialize_all
    from tradeloop.data import CandleLake
    from tradeloop.data.importer import import_sample

    root = Path(tempfile.mkdtemp(prefix="tradeloop-bench-"))
    research, exchange = ResearchResource(), ExchangeResource(mode="sample")
    if universe:
        files = real_binance_1h()
        t = time.perf_counter()
        import_sample(CandleLake(root / "lake"), files=files)
        print(
            f"lake: {len(files)} Binance 1h pairs from {REAL} imported in {time.perf_counter() - t:.1f} s; "
            f"universe: the top {universe} by dollar volume over 30 days"
        )
        research = ResearchResource(exchange="binance", timeframe="1h", top_n=universe, lookback_days=30, quote="USDT")
        exchange = ExchangeResource(mode="sample", sample_dir=str(REAL))
    instance = dg.DagsterInstance.ephemeral()
    started = time.perf_counter()
    result = materialize_all(
        {"stores": StoresResource(data_dir=str(root)), "research": research, "exchange": exchange}, instance
    )
    total = time.perf_counter() - started
    if not result.success:
        raise SystemExit(f"research run {result.run_id} failed after {total:.1f} s")
    chosen = result.asset_materializations_for_node("features")[0].metadata["universe"].data
    print(
        f"whole retrain (candles x{len(chosen)} -> features -> thresholds with optuna ({research.n_trials} "
        f"trials) -> backtest -> promotion), in-process executor: {total:.1f} s wall"
    )
    print(f"  universe: {', '.join(chosen)}")
    for step, seconds in step_seconds(instance).items():
        runs = f" ({len(seconds)} runs, {max(seconds):.1f} s the longest)" if len(seconds) > 1 else ""
        print(f"  step {step:<22} {sum(seconds):7.1f} s{runs}")
    for name in ("features", "thresholds", "backtest"):
        notebook = result.asset_materializations_for_node(name)[0].metadata.get("notebook_seconds")
        if notebook is not None:
            print(f"  notebook {name:<18} {notebook.value:7.1f} s")
    return root, total


def papermill_overhead(root: Path) -> None:
    from tradeloop.backtest import BacktestConfig, backtest_strategy
    from tradeloop.data import CandleLake, SeriesKey
    from tradeloop.performance import result_metrics
    from tradeloop.research.notebooks import notebook_path, run_notebook
    from tradeloop.strategies import SmaCross

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
    overhead = min(via_papermill) - min(direct)
    print(
        f"papermill notebook in-process: best {min(via_papermill):.2f} s vs the same work called directly "
        f"{min(direct):.3f} s -> overhead {overhead:.2f} s per notebook execution"
    )


def compare_models_on_universe(universe: int) -> None:
    import polars as pl

    from tradeloop.data import CandleLake
    from tradeloop.data.importer import import_sample
    from tradeloop.research.model_choice import ModelChoice, compare_models
    from tradeloop.research.steps import load_universe
    from tradeloop.research.tuning import TuningConfig, default_backtest, splitter_of
    from tradeloop.research.universe import select_universe, universe_config
    from tradeloop.strategies import SmaCross
    from tradeloop.thresholds import BarrierConfig

    root = Path(tempfile.mkdtemp(prefix="tradeloop-bench-models-"))
    lake = CandleLake(root / "lake")
    import_sample(lake, files=real_binance_1h())
    config = universe_config(exchange="binance", timeframe="1h", top_n=universe, lookback_days=30, quote="USDT")
    symbols = select_universe(lake, config)
    candles = load_universe(lake, exchange="binance", symbols=symbols, timeframe="1h")
    tuning = TuningConfig()
    common = {
        "timeframe": "1h",
        "splitter": splitter_of(tuning, timeframe="1h"),
        "backtest": default_backtest(tuning),
        "policy": tuning.policy,
        "periods_per_year": 365 * 24,
    }
    strategy, barriers = SmaCross(), BarrierConfig(cost=tuning.cost)
    print(
        f"models out of sample: {len(symbols)} Binance 1h pairs, {candles.height:,} candles, {strategy!r}, "
        f"{tuning.n_splits} walk-forward folds, retrain every {tuning.policy.retrain_every_days} days"
    )
    rows = []
    for label, choice in (
        ("base features", ModelChoice(model="auto")),
        ("candidates, 8 kept", ModelChoice(model="auto", features="candidates", max_features=8)),
    ):
        selection = compare_models(candles, strategy, barriers, choice=choice, **common)
        rows += [{"features": label, **o.row()} for o in selection.outcomes]
        if choice.model == "auto":
            picked = selection.outcome(selection.chosen)
            rows.append({"features": label, **picked.row(), "model": f"auto -> {selection.chosen}"})
    with pl.Config(tbl_cols=-1, tbl_width_chars=200, float_precision=4, tbl_hide_dataframe_shape=True):
        print(pl.DataFrame(rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--universe",
        type=int,
        default=None,
        metavar="N",
        help="run the whole retrain on the top N Binance 1h pairs of ../shared/data/real",
    )
    parser.add_argument(
        "--models",
        action="store_true",
        help="compare the logistic model and the boosted trees out of sample on --universe N pairs (default 50)",
    )
    args = parser.parse_args()
    if args.universe is not None and args.universe < 1:
        parser.error(f"--universe={args.universe}: give a number of pairs, at least 1")
    if args.models:
        compare_models_on_universe(args.universe or 50)
        return
    root, _ = run_pipeline(args.universe)
    if args.universe is None:
        papermill_overhead(root)


if __name__ == "__main__":
    main()
