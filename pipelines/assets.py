"""Research assets: candles -> features -> thresholds -> backtest -> promotion.

Notebook assets run papermill in-process and keep the executed .ipynb under
``<data>/runs/<run id>/``, linked from the materialization (in Dagster and in JupyterLab)
with the key numbers as readable tables (``pipelines.metadata``).
(No ``from __future__ import annotations`` here: Dagster reads the annotations.)
"""

import json
import time
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import polars as pl

from pipelines import checks, metadata
from pipelines.partitions import research_universe, symbol_partitions
from pipelines.resources import ExchangeResource, ResearchResource, StoresResource
from pipelines.retrain import CHAMPION_STALE_SOON, RETRAIN_FAILED, RETRAIN_REFUSED, RetrainResource, record
from tradeloop.backtest.engine import periods_per_year
from tradeloop.logs import bound_ids
from tradeloop.performance.format import count, ratio
from tradeloop.registry import Lineage, git_commit, snapshot_hash
from tradeloop.research.gate import evaluate_gate
from tradeloop.research.notebooks import ResearchPaths, notebook_path, run_notebook
from tradeloop.research.progress import StudyWatcher, TerminalProgress
from tradeloop.research.steps import (
    EQUITY_PARQUET,
    METRICS_JSON,
    MODEL_DIR,
    TUNING_JSON,
    load_evaluation,
)

REPO = Path(__file__).resolve().parents[1]


def _paths(stores: StoresResource) -> ResearchPaths:
    return ResearchPaths.under(stores.research_dir)


def _notebook(context: dg.AssetExecutionContext, stores: StoresResource, name: str, params: dict) -> tuple[dict, dict]:
    """Runs notebooks/<name>.py; returns its links (shown after the asset's tables) and the run's
    details (shown last: seconds and parameters)."""
    output = stores.run_dir(context.run.run_id) / f"{name}.ipynb"
    with bound_ids(run_id=context.run.run_id):  # on tradeloop's log records (tradeloop.logs)
        run = run_notebook(notebook_path(name), output, params, cwd=REPO)
    context.log.info(f"notebook {name} ran in {run.seconds:.1f} s; executed copy: {output}")
    return metadata.notebook_links(output), {
        "notebook_seconds": metadata.rounded(run.seconds, 1),
        "parameters": dg.MetadataValue.json(params),
    }


@dg.asset(
    partitions_def=symbol_partitions,
    group_name="research",
    kinds={"parquet"},
    check_specs=[checks.CANDLE_QUALITY_SPEC, checks.CANDLE_FRESHNESS_SPEC],
)
def candles(
    context: dg.AssetExecutionContext, stores: StoresResource, research: ResearchResource, exchange: ExchangeResource
):
    """Raw candles of one symbol (a partition per symbol of the research universe) in the lake,
    from the bundled sample or an exchange (ccxt), validated on the way in. In "Materialize all",
    pick All under Partition selection: Dagster opens a dynamic partition set with none chosen."""
    key = research.key(context.partition_key)
    refreshed = exchange.refresh(stores.lake, key)
    status = stores.lake.status(key)
    yield dg.MaterializeResult(
        metadata={
            **refreshed,
            "rows": status.rows,
            "first_candle": metadata.timestamp(status.first_ts),
            "last_candle": metadata.timestamp(status.last_ts),
            "gaps": len(status.gaps),
            "missing_candles": status.missing,
            "coverage": metadata.rounded(status.coverage),
        }
    )
    yield from checks.candle_quality(stores.lake, key)


@dg.asset(deps=[candles], group_name="research", kinds={"jupyter", "parquet"}, check_specs=[checks.FEATURE_SANITY_SPEC])
def features(
    context: dg.AssetExecutionContext, stores: StoresResource, research: ResearchResource, retrain: RetrainResource
):
    """Per-symbol features of the research universe (notebooks/features.py): its symbols are
    picked now, from the lake (an explicit list, or the top N by dollar volume over the
    lookback ending before the research data cut-off: ``research_universe``)."""
    out = _paths(stores).features
    symbols = research_universe(research, stores.lake, retrain)
    context.log.info(
        f"research universe: {len(symbols)} {research.exchange} {research.timeframe} series: {', '.join(symbols)}"
    )
    params = {
        "lake_dir": str(stores.lake.root),
        "exchange": research.exchange,
        "symbols": symbols,
        "timeframe": research.timeframe,
        "output_path": str(out),
    }
    links, details = _notebook(context, stores, "features", params)
    frame = pl.read_parquet(out)
    yield dg.MaterializeResult(
        metadata={
            **links,
            "universe": ", ".join(symbols),
            "rows": frame.height,
            "columns": len(frame.columns),
            "path": dg.MetadataValue.path(str(out)),
            **details,
        }
    )
    yield checks.feature_sanity(frame)


@dg.asset(deps=[features], group_name="research", kinds={"jupyter", "optuna", "sklearn"})
def thresholds(
    context: dg.AssetExecutionContext, stores: StoresResource, research: ResearchResource, retrain: RetrainResource
):
    """Tuned strategy + adaptive threshold model (notebooks/thresholds.py): a new optuna study
    for the data as it is now, warm-started with the champion's parameters, which are also
    re-evaluated on the same folds. A failure is audited (``retrain_failed``) and fails the run."""
    paths = _paths(stores)
    current = stores.registry.champion(research.strategy)
    params = {
        "features_path": str(paths.features),
        "strategy": research.strategy,
        "exchange": research.exchange,
        "timeframe": research.timeframe,
        "n_trials": research.n_trials,
        "max_drawdown": research.max_drawdown,
        "seed": research.seed,
        "storage": research.optuna_storage or None,
        "output_dir": str(paths.thresholds),
        "until_ms": retrain.until_ms(),
        "workers": research.workers,
        "fraction": research.fraction,
        "model": research.model_choice().model_dump(mode="json"),
        "policy": retrain.policy().model_dump(mode="json"),
        "champion_params": dict(current.lineage.parameters) if current else None,
    }
    try:
        with (
            TerminalProgress(total=research.n_trials, log=context.log.info) as shown,
            StudyWatcher(
                study_dir=paths.thresholds / "study",
                storage=research.optuna_storage or None,
                total=research.n_trials,
                on_progress=shown,
            ),
        ):
            links, details = _notebook(context, stores, "thresholds", params)
    except Exception as exc:
        record(
            RETRAIN_FAILED,
            root=stores.root,
            strategy=research.strategy,
            run_id=context.run.run_id,
            reason=f"{type(exc).__name__}: {exc}"[:500],
        )
        raise
    summary = json.loads((paths.thresholds / TUNING_JSON).read_text())
    champion = summary["champion"]
    reevaluated = metadata.rounded(champion["sharpe_per_bar"], 6) if champion else None
    return dg.MaterializeResult(
        metadata={
            "summary": metadata.key_values(
                {
                    "strategy": research.strategy,
                    "trials": summary["n_trials"],
                    "study": summary["study"],
                    "data version": summary["data_version"][:12],
                    "retrain policy": retrain.policy().describe(),
                    "best out-of-sample Sharpe per bar": ratio(summary["best_oos_sharpe"], 4),
                    "champion re-evaluated on the same folds": "no champion"
                    if reevaluated is None
                    else ratio(reevaluated, 4),
                    "threshold": ratio(summary["threshold"], 3),
                    "break-even p*": ratio(summary["p_star"], 3),
                    "labelled events": count(summary["events"]),
                }
            ),
            "best_params": metadata.table(summary["best_params"].items(), ["parameter", "value"]),
            **links,
            "best_oos_sharpe": metadata.rounded(summary["best_oos_sharpe"], 6),
            "n_trials": summary["n_trials"],
            "champion_reevaluated_sharpe": "no champion" if reevaluated is None else reevaluated,
            **details,
        }
    )


@dg.asset(deps=[thresholds], group_name="research", kinds={"jupyter"}, check_specs=[checks.BACKTEST_SANITY_SPEC])
def backtest(
    context: dg.AssetExecutionContext, stores: StoresResource, research: ResearchResource, retrain: RetrainResource
):
    """Report of the trained model: in-sample history + out-of-sample under the policy (notebooks/backtest.py)."""
    paths = _paths(stores)
    params = {
        "features_path": str(paths.features),
        "thresholds_dir": str(paths.thresholds),
        "timeframe": research.timeframe,
        "output_dir": str(paths.backtest),
        "until_ms": retrain.until_ms(),
    }
    links, details = _notebook(context, stores, "backtest", params)
    metrics = json.loads((paths.backtest / METRICS_JSON).read_text())
    equity = pl.read_parquet(paths.backtest / EQUITY_PARQUET)
    yield dg.MaterializeResult(
        metadata={  # tables first; numbers Dagster plots across runs in percent
            "metrics": metadata.metrics_table(
                {"out of sample (gate)": metrics["oos"], "whole history (in-sample, display)": metrics["full_history"]}
            ),
            "equity": metadata.equity_image(
                equity, title="equity and drawdown: whole history (in-sample, display only)"
            ),
            **links,
            "oos_sharpe_per_bar": metadata.rounded(metrics["oos"]["sharpe_per_bar"], 6),
            "oos_max_drawdown_pct": metadata.rounded(100 * metrics["oos"]["max_drawdown"], 2),
            "total_return_pct": metadata.rounded(100 * metrics["full_history"]["total_return"], 2),
            "trades": metrics["full_history"]["trades"],
            "equity_path": dg.MetadataValue.path(str(paths.backtest / EQUITY_PARQUET)),
            **details,
        }
    )
    yield checks.backtest_sanity(metrics, equity)


@dg.asset(deps=[backtest], group_name="research", kinds={"registry"})
def promotion(
    context: dg.AssetExecutionContext, stores: StoresResource, research: ResearchResource, retrain: RetrainResource
):
    """Promote the model when every gate check passes (each reports its number and bar); else
    keep the champion and audit why (``retrain_refused``), and warn when the champion in force
    goes stale before the next scheduled retrain (``champion_stale_soon``)."""
    paths = _paths(stores)
    registry = stores.registry
    evaluation = load_evaluation(paths.thresholds)
    tuning = json.loads((paths.thresholds / TUNING_JSON).read_text())
    current = registry.champion(research.strategy)
    champion = tuning["champion"] if current else None
    report = evaluate_gate(
        candidate_returns=evaluation["best_returns"],
        folds=tuning["folds"],
        trial_sharpes=evaluation["trial_sharpes"],
        returns_matrix=evaluation["returns_matrix"],
        pbo_trials=tuple(tuning["pbo_trials"]),
        champion_sharpe=champion["sharpe_per_bar"] if champion else None,
        periods_per_year=periods_per_year(research.timeframe),
        config=retrain.gate(),
    )
    context.log.info("promotion gate:\n" + report.summary())
    artifact = registry.register(paths.thresholds / MODEL_DIR)
    meta = {"gate": dg.MetadataValue.md(report.markdown()), "promoted": report.passed}
    if report.passed:
        metrics = json.loads((paths.backtest / METRICS_JSON).read_text())
        symbols = sorted(tuning.get("symbols") or research.symbols)
        files = [f for s in symbols for f in stores.lake.files(research.key(s))]
        lineage = Lineage(
            git_commit=git_commit(REPO),
            data_snapshot=snapshot_hash(files),
            notebook="notebooks/thresholds.py",
            parameters=tuning["best_params"],
            run_id=context.run.run_id,
            metrics={
                "oos_sharpe_per_bar": metrics["oos"]["sharpe_per_bar"],
                "oos_max_drawdown": metrics["oos"]["max_drawdown"],
                **{c["name"]: c["value"] for c in report.as_dicts()},
            },
            gate=report.as_dicts(),
        )
        entry = registry.promote(research.strategy, artifact, lineage=lineage)
        meta["champion"] = entry.artifact
    else:
        meta["champion"] = current.artifact if current else "none"
        reason = "gate refused the candidate: " + "; ".join(report.failures)
        context.log.warning(reason)
        record(
            RETRAIN_REFUSED,
            root=stores.root,
            strategy=research.strategy,
            run_id=context.run.run_id,
            reason=reason,
            artifact=artifact,
        )
    meta.update(_staleness(stores, research.strategy, retrain, context.run.run_id, context.log))
    meta.update(artifact=artifact, gate_checks=dg.MetadataValue.json(report.as_dicts()))  # for machines, last
    return dg.MaterializeResult(metadata=meta)


def _staleness(stores: StoresResource, strategy: str, retrain: RetrainResource, run_id: str, log) -> dict:
    """When the champion in force goes stale, and a ``champion_stale_soon`` audit row when
    that is before the next scheduled retrain (the engine would fall back before it)."""
    registry = stores.registry
    entry = registry.champion(strategy)
    if entry is None:
        return {"champion_stale_at": "no champion"}
    model = registry.model_of(entry.artifact, strategy=strategy)
    stale_at = model.trained_until + model.max_age_ms
    policy = retrain.policy()
    now = retrain.until_ms() or int(time.time() * 1000)
    next_retrain = policy.last_retrain_time(now) + policy.cadence_ms
    when = datetime.fromtimestamp(stale_at / 1000, tz=UTC).isoformat(timespec="minutes")
    if stale_at <= next_retrain:
        why = (
            f"champion {entry.artifact[:12]} goes stale at {when}, before the next scheduled retrain "
            f"({datetime.fromtimestamp(next_retrain / 1000, tz=UTC).isoformat(timespec='minutes')}): "
            f"the engine will then be {'reduce-only' if model.on_stale == 'reduce_only' else 'on break-even p*'}"
        )
        log.warning(why)
        record(
            CHAMPION_STALE_SOON, root=stores.root, strategy=strategy, run_id=run_id, reason=why, stale_at_ms=stale_at
        )
    return {"champion_stale_at": when}
