"""The research decision, shared by backtest and live engine: strategy signals whose
entries the threshold model accepts. Exits always pass (a filter must never trap a position)."""

from __future__ import annotations

import numpy as np
import polars as pl

from tradeloop.features import DEFAULT_FEATURES, compute_features
from tradeloop.strategies.signals import ENTRIES
from tradeloop.thresholds.dataset import META_FEATURES
from tradeloop.thresholds.model import ThresholdModel


def decide(candles: pl.DataFrame, model: ThresholdModel, *, now_ms: int | None = None) -> pl.DataFrame:
    """Candles (one or many symbols, sorted by ts within each) with features, ``score``,
    ``proba`` (null where no entry fired) and the filtered int8 ``signal``."""
    frame = candles if "symbol" in candles.columns else candles.with_columns(symbol=pl.lit("_"))
    specs = [spec for spec in DEFAULT_FEATURES if spec.name in model.features]  # what the model reads
    enriched = model.strategy.signals(compute_features(frame, specs), by="symbol")
    entry = (enriched["signal"].to_numpy() & ENTRIES) != 0
    proba = np.full(enriched.height, np.nan)
    rows = np.flatnonzero(entry)
    if rows.size:
        feats = enriched[rows].select(META_FEATURES)
        finite = np.isfinite(feats.to_numpy()).all(axis=1)
        ok_rows = rows[finite]
        if ok_rows.size:
            proba[ok_rows] = model.probabilities(feats.filter(pl.Series(finite)))
    rejected = entry & ~(proba > model.bar(now_ms))  # NaN (features still warming up) is rejected too
    signal = enriched["signal"].to_numpy().copy()
    signal[rejected] &= ~np.int8(ENTRIES)
    return enriched.with_columns(
        proba=pl.Series(proba).fill_nan(None), signal=pl.Series(signal, dtype=pl.Int8))
