"""Meta-labeling data set: one row per strategy entry, its features and its outcome."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import numpy as np
import polars as pl

from tradeloop.features import CANDIDATE_FEATURES, MODEL_SPECS, FeatureSpec, compute_features
from tradeloop.features.cache import active_cache
from tradeloop.strategies.base import Strategy
from tradeloop.strategies.signals import ENTER_LONG, ENTER_SHORT
from tradeloop.thresholds.labels import BarrierConfig, triple_barrier_labels

# features the meta-labeling classifier sees: scale-free ones only, so one model serves
# symbols of very different prices
META_FEATURES: tuple[str, ...] = (
    "score",
    "ret_1",
    "rsi_14",
    "vol_20",
    "zscore_20",
    "volume_ratio_20",
    "volume_zscore_20",
)
#: META_FEATURES and the engineered candidates (``tradeloop.features.candidates``), for a model
#: that selects among them on its training events
CANDIDATE_META_FEATURES: tuple[str, ...] = (*META_FEATURES, *(s.name for s in CANDIDATE_FEATURES))
#: every name a model may read: the strategy's ``score`` and the features of ``MODEL_SPECS``
MODEL_FEATURES: tuple[str, ...] = ("score", *(s.name for s in MODEL_SPECS))


def specs_for(features: Sequence[str]) -> list[FeatureSpec]:
    """The specs that compute ``features`` (the strategy's ``score`` aside)."""
    return [spec for spec in MODEL_SPECS if spec.name in features]


def entry_events(signals: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Rows where a position would be opened, and their direction (+1 long, -1 short)."""
    sig = signals["signal"].to_numpy()
    longs = (sig & ENTER_LONG) != 0
    shorts = (sig & ENTER_SHORT) != 0
    rows = np.flatnonzero(longs | shorts)
    return rows, np.where(longs[rows], 1.0, -1.0)


def meta_dataset(
    candles: pl.DataFrame,
    strategy: Strategy,
    *,
    barriers: BarrierConfig = BarrierConfig(),
    features: Sequence[str] = META_FEATURES,
) -> pl.DataFrame:
    """Events of every symbol (long frame with ``symbol``), sorted by ``ts`` then ``symbol``.

    Columns: symbol, ts, t1, direction, the ``features`` (names of ``MODEL_FEATURES``), ret,
    net_ret, barrier, label. Rows whose features are still warming up are dropped. Features
    are computed on the whole frame at once (cross-sectional ranks read every symbol at a bar).
    """
    names = list(features)
    parts = []
    frame = candles if "symbol" in candles.columns else candles.with_columns(symbol=pl.lit("_"))
    cache = active_cache()  # features once per data version, signals once per strategy (its windows)
    scope = cache.scope(frame) if cache is not None else None

    def featuring() -> pl.DataFrame:
        return compute_features(frame.sort("symbol", "ts"), specs_for(names), by="symbol")

    featured = featuring() if scope is None else scope.get(("meta_features", tuple(names)), featuring)
    for (symbol,), part in featured.group_by("symbol", maintain_order=True):
        if scope is None:
            enriched = strategy.signals(part, by=None)
        else:
            key = ("meta_signals", symbol, tuple(names), strategy_key(strategy))
            enriched = scope.get(key, partial(strategy.signals, part, by=None))
        rows, dirs = entry_events(enriched)
        if rows.size == 0:
            continue
        labels = triple_barrier_labels(enriched, rows, direction=dirs, config=barriers)
        feats = enriched.select(names)[labels["row"].to_numpy()]
        parts.append(pl.concat([labels.drop("row").with_columns(symbol=pl.lit(symbol)), feats], how="horizontal"))
    if not parts:
        return _empty(names)
    out = pl.concat(parts).drop_nulls(names).filter(pl.all_horizontal(pl.col(names).is_finite()))
    return out.sort("ts", "symbol").select(
        "symbol", "ts", "t1", "direction", *names, "ret", "net_ret", "barrier", "label"
    )


def strategy_key(strategy: Strategy) -> str:
    """Everything a strategy's signals depend on (class, parameters, rule), for cache keys."""
    return f"{type(strategy).__module__}.{type(strategy).__qualname__}:{strategy.model_dump_json()}"


def _empty(features: Sequence[str]) -> pl.DataFrame:
    schema = {
        "symbol": pl.Utf8,
        "ts": pl.Int64,
        "t1": pl.Int64,
        "direction": pl.Int8,
        **{f: pl.Float64 for f in features},
        "ret": pl.Float64,
        "net_ret": pl.Float64,
        "barrier": pl.Utf8,
        "label": pl.Int8,
    }
    return pl.DataFrame(schema=schema)
