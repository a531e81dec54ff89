"""The two windows a drift report compares, built from the lake and the champion.

Rules:

- The training window is what the model learnt from: bars from ``model.info["trained_from"]``
  (the first training event; the first candle when a model does not record it) to
  ``model.trained_until``, on the symbols of its universe (``model.universe``). The live window
  is every bar after ``trained_until`` (up to ``until_ms`` when given): bars it never saw.
- Features are the model's own (``model.features``), computed over each symbol's whole
  history by the decision code (``tradeloop.thresholds.decide.enrich``: no look-ahead), then
  cut into the two windows; every bar counts, not only the bars where the strategy fired.
- Closed outcomes are the model's own target: every entry the strategy fired, labelled by
  the triple barrier (``meta_dataset``), whose label has closed. Training outcomes are those
  decided and closed inside the training window; live outcomes those decided after it.
  Using every entry, not only the trades a session took, keeps the sample free of the
  threshold's selection (a session trades only the entries the model liked).
- The operational database stores no probability with an order or its audit rows, so each
  outcome's probability is recomputed by running the model on the features of its entry
  bar (``ThresholdModel.probabilities``): deterministic, the same number the live engine
  computed on that bar (its rolling window equals the full history: ``tradeloop.thresholds.warmup``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from tradeloop.data import CANDLE_COLUMNS, CandleLake, SeriesKey, earliest, latest
from tradeloop.data.atomic import write_bytes_atomic
from tradeloop.drift.config import DriftConfig
from tradeloop.drift.report import DriftReport, calibration_drift, feature_drift, verdict
from tradeloop.drift.sessions import session_outcomes
from tradeloop.errors import ModelError
from tradeloop.ops import OpsStore
from tradeloop.registry import ModelRegistry
from tradeloop.thresholds import ThresholdModel, meta_dataset
from tradeloop.thresholds.decide import enrich

DRIFT_DIR = "drift"  # under the research folder: <strategy>.json, the latest report per strategy


@dataclass(frozen=True, kw_only=True, slots=True)
class DriftWindows:
    """The model's features and closed outcomes, in its training window and after it."""

    trained_from: int
    trained_until: int
    reference: pl.DataFrame  # one row per training bar, a column per model feature
    live: pl.DataFrame  # the same after the training window
    reference_outcomes: pl.DataFrame  # ts, symbol, proba, label: closed training outcomes
    live_outcomes: pl.DataFrame  # the same decided after the training window


def drift_windows(candles: pl.DataFrame, model: ThresholdModel, *, until_ms: int | None = None) -> DriftWindows:
    """Training and live windows of ``candles`` (symbol, ts, OHLCV; module rules)."""
    if until_ms is not None:
        candles = candles.filter(pl.col("ts") <= until_ms)
    if candles.is_empty():
        raise ModelError("no candles to compare the model with; load the symbols of its universe into the lake")
    candles = candles.sort("symbol", "ts")
    features = list(model.features)
    trained_from = int(model.info.get("trained_from") or earliest(candles["ts"]))
    until = model.trained_until
    enriched = enrich(candles, model.strategy, model.features).select("symbol", "ts", *features)
    in_training = pl.col("ts").is_between(trained_from, until)
    events = meta_dataset(candles, model.strategy, barriers=model.barriers).select("symbol", "ts", "t1", "label")
    events = events.join(enriched, on=["symbol", "ts"], how="inner").filter(
        pl.all_horizontal(pl.col(features).is_finite())
    )
    proba = model.probabilities(events) if events.height else np.empty(0)
    outcomes = events.with_columns(proba=pl.Series(proba, dtype=pl.Float64))
    keep = ["symbol", "ts", "proba", "label"]
    return DriftWindows(
        trained_from=trained_from,
        trained_until=until,
        reference=enriched.filter(in_training).select(features),
        live=enriched.filter(pl.col("ts") > until).select(features),
        reference_outcomes=outcomes.filter(in_training & (pl.col("t1") <= until)).select(keep),
        live_outcomes=outcomes.filter(pl.col("ts") > until).select(keep),
    )


def drift_report(
    windows: DriftWindows,
    *,
    strategy: str,
    artifact: str,
    config: DriftConfig,
    live_ts: pl.Series | None = None,
    traded: pl.DataFrame | None = None,
) -> DriftReport:
    """The report of ``windows`` under ``config``'s bars. Calibration and the hit rate are
    judged on ``traded`` (the champion's closed trades in the sessions:
    ``tradeloop.drift.sessions``) once they number ``min_closed``, else on the windows'
    simulated outcomes."""
    rows = tuple(
        feature_drift(name, windows.reference[name].to_numpy(), windows.live[name].to_numpy(), config=config)
        for name in windows.reference.columns
    )
    ref, cur, source = windows.reference_outcomes, windows.live_outcomes, "simulated"
    if traded is not None and traded.height >= config.min_closed:
        cur, source = traded, "sessions"
    calibration = calibration_drift(
        cur["proba"].to_numpy(),
        cur["label"].to_numpy(),
        reference_proba=ref["proba"].to_numpy(),
        reference_label=ref["label"].to_numpy(),
        config=config,
        source=source,
    )
    drifted, reasons = verdict(rows, calibration, config=config)
    seen = live_ts if live_ts is not None and live_ts.len() else None
    return DriftReport(
        strategy=strategy,
        artifact=artifact,
        trained_from=windows.trained_from,
        trained_until=windows.trained_until,
        live_from=earliest(seen) if seen is not None else None,
        live_until=latest(seen) if seen is not None else None,
        features=rows,
        calibration=calibration,
        config=config,
        drifted=drifted,
        reasons=reasons,
    )


def champion_drift(
    lake: CandleLake,
    registry: ModelRegistry,
    *,
    strategy: str,
    config: DriftConfig,
    until_ms: int | None = None,
    store: OpsStore | None = None,
) -> DriftReport:
    """The drift report of ``strategy``'s champion on its universe's candles in ``lake``; with
    ``store``, calibration is judged on the champion's closed trades in its sessions when they
    are enough (``drift_report``).

    Raises
    ------
    ModelError
        No champion, or a champion that does not record the universe it was trained on.
    """
    entry, model = registry.load(strategy)
    if model.universe is None:
        raise ModelError(
            f"champion {entry.artifact[:12]} of {strategy} records no training universe; retrain it to judge drift"
        )
    u = model.universe
    keys = [SeriesKey(u.exchange, s, u.timeframe) for s in u.symbols]
    candles = lake.read_many(keys).select("symbol", *CANDLE_COLUMNS)
    windows = drift_windows(candles, model, until_ms=until_ms)
    live_ts = candles.filter((pl.col("ts") > model.trained_until) & (pl.col("ts") <= (until_ms or 2**62)))["ts"]
    traded = None
    if store is not None:
        traded = session_outcomes(store, strategy=strategy, artifact=entry.artifact, until_ms=until_ms)
        traded = traded.filter(pl.col("ts") > model.trained_until)
    return drift_report(
        windows, strategy=strategy, artifact=entry.artifact, config=config, live_ts=live_ts, traded=traded
    )


def report_path(research_dir: Path, strategy: str) -> Path:
    """Where the latest drift report of ``strategy`` lives (the pipeline writes it, metrics read it)."""
    return Path(research_dir) / DRIFT_DIR / f"{strategy}.json"


def write_report(report: DriftReport, path: Path) -> Path:
    """``report`` as JSON at ``path``, written atomically."""
    write_bytes_atomic(json.dumps(report.as_dict(), indent=2, sort_keys=True).encode(), Path(path))
    return Path(path)


def read_report(path: Path) -> DriftReport:
    """The report written at ``path``; ``ModelError`` when it is missing or malformed."""
    try:
        return DriftReport.from_dict(json.loads(Path(path).read_text()))
    except FileNotFoundError:
        raise ModelError(f"{path} holds no drift report; materialize drift_report first") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"{path} is not a drift report ({type(exc).__name__}: {exc}); materialize it again") from None
