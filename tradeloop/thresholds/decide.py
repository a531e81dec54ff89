"""The research decision, shared by backtest and live engine: strategy signals whose
entries the threshold model accepts. Exits always pass (a filter must never trap a position).

Two steps, so that history is enriched once and then judged by several models in turn
(the walk-forward's refits): ``enrich`` (features + strategy score and signals) and
``apply_model`` (probabilities of the entries, accepted against the model's bar at the
decision time). ``decide`` is both at once.

``enrich_latest`` is ``enrich``'s rows at one bar, for the live engine's rolling window: the
strategy's signals over the whole window (the rule remembers the zone the score was last in),
the model's features at that bar only (``tradeloop.features.latest``), so a decision costs
one row's features per symbol instead of the window's.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl

from tradeloop.errors import ConfigError
from tradeloop.features import compute_features
from tradeloop.features.cache import active_cache
from tradeloop.features.latest import Blocks, latest_features
from tradeloop.strategies import Strategy
from tradeloop.strategies.signals import ENTRIES
from tradeloop.thresholds.dataset import META_FEATURES, specs_for, strategy_key
from tradeloop.thresholds.model import ThresholdModel


def enrich(candles: pl.DataFrame, strategy: Strategy, features: Sequence[str] = META_FEATURES) -> pl.DataFrame:
    """Candles (one or many symbols, sorted by ts within each) with the ``features`` a model
    reads, the strategy's ``score`` and its int8 ``signal``."""
    frame = candles if "symbol" in candles.columns else candles.with_columns(symbol=pl.lit("_"))
    cache = active_cache()
    if cache is None:
        return strategy.signals(compute_features(frame, specs_for(features)), by="symbol")
    scope = cache.scope(frame)  # features once per data version, signals once per strategy (its windows)
    names = tuple(features)
    feats = scope.get(("enrich_features", names), lambda: compute_features(frame, specs_for(names)))
    return scope.get(("enrich_signals", names, strategy_key(strategy)), lambda: strategy.signals(feats, by="symbol"))


def enrich_latest(
    window: pl.DataFrame, strategy: Strategy, features: Sequence[str] = META_FEATURES, *, ts: int
) -> pl.DataFrame:
    """``enrich(window, strategy, features).filter(ts == ts)`` with the least work: the rule
    over the window's scores (it remembers the zone the score was last in), every feature at
    ``ts`` only (``tradeloop.features.latest``). Equal within polars' rounding of running sums
    (``tests/thresholds/test_enrich_latest.py``). ``window``: one or many symbols, rows in
    time order within each; bars after ``ts`` are ignored."""
    frame = window if "symbol" in window.columns else window.with_columns(symbol=pl.lit("_"))
    blocks = Blocks.of(frame, ts=ts)
    decided = _signals_at(strategy, blocks)
    specs = specs_for(features)
    if not specs:
        return decided
    return decided.join(latest_features(blocks, specs, ts=ts), on="symbol", how="left", maintain_order="left")


SETTLE_BARS = 64  # warm scores before the decided bar in which the rule's sides are looked for first


def _signals_at(strategy: Strategy, blocks: Blocks) -> pl.DataFrame:
    """The decided rows with ``score`` and ``signal``: ``strategy.signals`` over every block.

    A finite score that is null exactly until it reads its whole span (warm-up = span - 1, as
    every bundled strategy's) is evaluated on each block's last ``warm-up + SETTLE_BARS`` rows,
    stacked and ungrouped: a row past the warm-up of its tail reads its own block only, the
    rows before are masked. The rule's side is the last zone the score was in, so where every
    side saw a zone in the tail (``ThresholdRule.last_signals``), the signal is the window's;
    otherwise the score runs over the whole window (once, ungrouped, its warm-up nulled). Any
    other score is evaluated per symbol."""
    memory = strategy.score_memory
    if not (memory.finite and memory.warmup == memory.exact_bars() - 1):
        score = strategy.scores(blocks.frame, by="symbol")["score"].cast(pl.Float64)
        return _decided(strategy, blocks, score.fill_null(np.nan).to_numpy(), score.is_not_null().to_numpy())
    expr = strategy.score_expr().cast(pl.Float64)
    lengths = blocks.lengths
    kept = np.minimum(lengths, memory.warmup + SETTLE_BARS)
    offsets = (np.cumsum(kept) - kept).astype(np.int64)  # each tail's first row in the stacked frame
    within = np.arange(int(kept.sum())) - np.repeat(offsets, kept)  # a row's place in its tail
    rows = np.repeat(blocks.ends - kept + 1, kept) + within
    score = blocks.frame.select(sorted(set(expr.meta.root_names())))[rows].select(expr).to_series()  # what it reads
    values = score.fill_null(np.nan).to_numpy().copy()
    values[within < memory.warmup] = np.nan  # before its tail's warm-up a row reads the block before
    last = offsets + kept - 1
    flags, settled = strategy.rule.last_signals(values, offsets, last)
    if not (settled | (kept == lengths)).all():  # a side's last zone lies further back: the whole window
        whole = blocks.frame.select(expr).to_series()
        warm = blocks.positions() >= memory.warmup
        window = np.where(warm, whole.fill_null(np.nan).to_numpy(), np.nan)
        return _decided(strategy, blocks, window, warm & whole.is_not_null().to_numpy())
    valid = (within[last] >= memory.warmup) & score.is_not_null().to_numpy()[last]
    at = pl.Series("score", values[last]).set(pl.Series(~valid), None)
    return blocks.frame[blocks.ends].with_columns(at, pl.Series("signal", flags, dtype=pl.Int8))


def _decided(strategy: Strategy, blocks: Blocks, values: np.ndarray, valid: np.ndarray) -> pl.DataFrame:
    """The rule over every block's scores (``values``, NaN where ``valid`` is False), at the decided rows."""
    signal = strategy.rule.apply_grouped(values, blocks.codes)
    ends = blocks.ends
    at = pl.Series("score", values[ends]).set(pl.Series(~valid[ends]), None)
    return blocks.frame[ends].with_columns(at, pl.Series("signal", signal[ends], dtype=pl.Int8))


def apply_model(enriched: pl.DataFrame, model: ThresholdModel | None, *, now_ms: int | str) -> pl.DataFrame:
    """``enriched`` with ``proba`` (null where no entry fired) and the filtered ``signal``.

    ``now_ms`` is the decision time, which decides whether the model is stale: one time for
    every row (the live engine passes the bar's ts), or ``"bar"``: each row at its own ts, as
    the live engine would have decided it (backtests over history). ``model=None`` is the
    reduce-only fallback: no entry passes. Nothing here reads the wall clock."""
    entry = (enriched["signal"].to_numpy() & ENTRIES) != 0
    proba = np.full(enriched.height, np.nan)
    if model is None:
        bar: float | np.ndarray = np.inf
    elif isinstance(now_ms, str):
        if now_ms != "bar":
            raise ConfigError(f"now_ms={now_ms!r}: give the decision time in ms, or 'bar' (each row at its ts)")
        bar = model.bars(enriched["ts"].to_numpy())
    else:
        bar = model.bar(int(now_ms))
    rows = np.flatnonzero(entry)
    if rows.size and model is not None:
        feats = enriched[rows].select(model.features)
        finite = np.isfinite(feats.to_numpy()).all(axis=1)
        ok_rows = rows[finite]
        if ok_rows.size:
            proba[ok_rows] = model.probabilities(feats.filter(pl.Series(finite)))
    rejected = entry & ~(proba > bar)  # NaN (features still warming up) is rejected too
    signal = enriched["signal"].to_numpy().copy()
    signal[rejected] &= ~np.int8(ENTRIES)
    return enriched.with_columns(proba=pl.Series(proba).fill_nan(None), signal=pl.Series(signal, dtype=pl.Int8))


def decide(candles: pl.DataFrame, model: ThresholdModel, *, now_ms: int | str) -> pl.DataFrame:
    """Candles with features, ``score``, ``proba`` and the filtered int8 ``signal``
    (``enrich`` then ``apply_model``); ``now_ms`` is required: see ``apply_model``."""
    return apply_model(enrich(candles, model.strategy, model.features), model, now_ms=now_ms)
