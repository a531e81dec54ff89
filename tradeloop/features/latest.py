"""The features of each symbol's newest bar in a window, with the least work: what a live
decision reads (``tradeloop.thresholds.decide.enrich_latest``).

``compute_features`` evaluates every row of every symbol; a decision on bar ``ts`` reads one
row per symbol. Each feature takes one of three routes, and every route gives the row that
``compute_features(window).filter(ts == ts)`` gives (``tests/features/test_latest.py`` holds
them equal on the bundled real data, every feature of ``MODEL_SPECS``):

* **tails**: a feature of finite memory (``Memory.finite``) reads its symbol's last
  ``exact_bars`` rows and nothing before them. Those rows of every symbol are stacked into one
  frame and the expression runs once over it, ungrouped: a block's last row reaches back
  ``exact_bars - 1`` rows at most, all in its own block, so it is the grouped value (up to the
  rounding of polars' running sums, as on any window; ``tradeloop.features.memory``). A
  symbol with fewer rows than that is computed on its own rows. A cross-sectional feature
  ranks its source's values at ``ts``, which these last rows hold for every symbol; two
  symbols whose values are equal up to that rounding (identical histories) may rank apart
  here and tie there, as they may between any two windows.
* **compiled**: the exponential features of ``DEFAULT_FEATURES`` (EMA, Wilder's RSI and ATR)
  run here as one compiled pass over every symbol's rows, seeded at the symbol's first row
  in the window as the expression is, with polars' own ``ewm_mean`` update (adjust=False),
  when no price in the window is null or NaN (polars skips a null; these loops do not).
* **grouped**: any other feature goes through ``compute_features`` on the window.

The window is a long frame with ``symbol`` and ``ts``, rows in time order within a symbol;
bars after ``ts`` are ignored, and a symbol without a candle at ``ts`` has no row in the result.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numba as nb
import numpy as np
import polars as pl

from tradeloop.features.pipeline import DEFAULT_FEATURES, FeatureSpec, compute_features, cross_rank


@dataclass(frozen=True, slots=True)
class Blocks:
    """A window's rows grouped by symbol into contiguous blocks in time order: each row's block
    (``codes``, 0..k-1) and every block's first row (``runs``), and the first and last rows
    (``starts``, ``ends``, inclusive) of the blocks whose last row is at ``ts``, the symbols
    decided."""

    frame: pl.DataFrame
    codes: np.ndarray
    runs: np.ndarray  # first row of every block
    starts: np.ndarray
    ends: np.ndarray

    @property
    def lengths(self) -> np.ndarray:
        return self.ends - self.starts + 1

    def positions(self) -> np.ndarray:
        """Each row's place in its block (0 for its first)."""
        return np.arange(self.frame.height) - self.runs[self.codes]

    @classmethod
    def of(cls, window: pl.DataFrame, *, ts: int) -> Blocks:
        if window.height and window["ts"].max() > ts:  # type: ignore[operator]
            window = window.filter(pl.col("ts") <= ts)
        codes, starts, ends = _runs(window)
        if np.unique(window["symbol"].gather(ends).to_numpy()).size < ends.size:  # a symbol in two runs
            window = window.sort("symbol", maintain_order=True)
            codes, starts, ends = _runs(window)
        at_ts = window["ts"].to_numpy()[ends] == ts
        return cls(frame=window, codes=codes, runs=starts, starts=starts[at_ts], ends=ends[at_ts])


def _runs(window: pl.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if window.is_empty():
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    ids = window["symbol"].rle_id().to_numpy()
    ends = np.append(np.flatnonzero(ids[1:] != ids[:-1]), ids.size - 1).astype(np.int64)
    return ids.astype(np.int64), np.concatenate([[0], ends[:-1] + 1]).astype(np.int64), ends


def latest_features(window: pl.DataFrame | Blocks, specs: Sequence[FeatureSpec], *, ts: int) -> pl.DataFrame:
    """``symbol`` and one column per spec: its value at ``ts`` for every symbol with a candle
    there (``window``: the long frame, or its ``Blocks`` at ``ts``)."""
    blocks = window if isinstance(window, Blocks) else Blocks.of(window, ts=ts)
    out = blocks.frame[blocks.ends].select("symbol")
    if out.is_empty():  # no symbol has a candle at ts
        return out.with_columns(pl.lit(None, dtype=pl.Float64).alias(s.name) for s in specs)
    columns: list[pl.Series] = []
    tails: list[FeatureSpec] = []
    grouped: list[FeatureSpec] = []
    clean = any(s.name in COMPILED for s in specs) and _all_numbers(blocks.frame)
    for spec in specs:
        kernel = COMPILED.get(spec.name)
        if kernel is not None and spec is _DEFAULTS.get(spec.name) and clean:
            values = kernel(blocks) if blocks.ends.size else np.zeros(0)
            columns.append(pl.Series(spec.name, values, dtype=pl.Float64, nan_to_null=True))
        elif spec.memory.finite:
            tails.append(spec)
        else:
            grouped.append(spec)
    if tails:
        columns += _from_tails(blocks, tails)
    out = out.with_columns(columns)
    if grouped:
        names = [s.name for s in grouped]
        rows = compute_features(blocks.frame, grouped).filter(pl.col("ts") == ts).select("symbol", *names)
        out = out.join(rows, on="symbol", how="left", maintain_order="left")
    return out.select("symbol", *(s.name for s in specs))


def _from_tails(blocks: Blocks, specs: list[FeatureSpec]) -> list[pl.Series]:
    """``specs`` (finite) at each block's last row, evaluated at once on every block's last
    ``n`` rows stacked, ``n`` the longest ``exact_bars`` among them; the blocks shorter than
    that (young symbols) at once per symbol on their own rows."""
    plain = [(s.source or s).build().cast(pl.Float64).alias(s.name) for s in specs]
    n = max((s.source or s).exact_bars() for s in specs)
    inputs = sorted({"symbol", *(name for e in plain for name in e.meta.root_names())})
    source = blocks.frame.select(inputs)
    long, short = blocks.lengths >= n, blocks.lengths < n
    parts, order = [], [np.flatnonzero(long), np.flatnonzero(short)]
    if long.any():
        rows = (blocks.ends[long][:, None] - np.arange(n - 1, -1, -1)).ravel()
        parts.append(source[rows].select(plain).gather_every(n, offset=n - 1))
    if short.any():
        rows = np.concatenate(
            [np.arange(a, b + 1) for a, b in zip(blocks.starts[short], blocks.ends[short], strict=True)]
        )
        young = source[rows].select(pl.col("symbol"), *(e.over("symbol") for e in plain))
        parts.append(young.group_by("symbol", maintain_order=True).last().drop("symbol"))
    last = pl.concat(parts) if len(parts) > 1 else parts[0]
    if short.any() and long.any():  # back in block order
        last = last[np.argsort(np.concatenate(order), kind="stable")]
    stamped = last.with_columns(ts=pl.lit(0))  # one bar: a cross-sectional rank is over all of these rows
    return [stamped.select(cross_rank(s.name)).to_series().alias(s.name) if s.source else last[s.name] for s in specs]


# ---------------------------------------------------------------------- compiled recursions
@nb.njit(cache=True, inline="always")
def _ewm_step(mean, x, alpha):  # pragma: no cover - compiled
    """polars' ``ewm_mean`` update with adjust=False (its weight is 1 after every value)."""
    return mean + (x - mean) * (alpha / ((1.0 - alpha) + alpha))


@nb.njit(cache=True)
def _ema_last(close, starts, ends, alpha, min_samples):  # pragma: no cover - compiled
    out = np.full(starts.size, np.nan)
    for j in range(starts.size):
        mean = close[starts[j]]
        for i in range(starts[j] + 1, ends[j] + 1):
            mean = _ewm_step(mean, close[i], alpha)
        if ends[j] - starts[j] + 1 >= min_samples:
            out[j] = mean
    return out


@nb.njit(cache=True)
def _rsi_last(close, starts, ends, n):  # pragma: no cover - compiled
    """Wilder's RSI: EWMs (alpha 1/n, adjust=False, n samples) of the close's gains and losses."""
    alpha = 1.0 / n
    out = np.full(starts.size, np.nan)
    for j in range(starts.size):
        gain = 0.0
        loss = 0.0
        for i in range(starts[j] + 1, ends[j] + 1):
            d = close[i] - close[i - 1]
            g = d if d > 0.0 or np.isnan(d) else 0.0
            lo = -d if -d > 0.0 or np.isnan(d) else 0.0
            if i == starts[j] + 1:
                gain, loss = g, lo
            else:
                gain, loss = _ewm_step(gain, g, alpha), _ewm_step(loss, lo, alpha)
        if ends[j] - starts[j] >= n:
            out[j] = 100.0 if loss == 0.0 else 100.0 - 100.0 / (1.0 + gain / loss)
    return out


@nb.njit(cache=True)
def _atr_last(high, low, close, starts, ends, n):  # pragma: no cover - compiled
    """Wilder's ATR: the true range's EWM (alpha 1/n, adjust=False, n samples)."""
    alpha = 1.0 / n
    out = np.full(starts.size, np.nan)
    for j in range(starts.size):
        mean = high[starts[j]] - low[starts[j]]
        for i in range(starts[j] + 1, ends[j] + 1):
            prev = close[i - 1]
            tr = max(high[i] - low[i], abs(high[i] - prev), abs(low[i] - prev))
            mean = _ewm_step(mean, tr, alpha)
        if ends[j] - starts[j] + 1 >= n:
            out[j] = mean
    return out


def _all_numbers(frame: pl.DataFrame) -> bool:
    """No null or NaN among the prices the recursions read: polars skips a null in an EWM and in
    ``max_horizontal``, which the compiled loops do not (a frame with one goes the grouped route)."""
    prices = frame.select("high", "low", "close")
    return not any(prices.null_count().row(0)) and not prices.select(pl.all().is_nan().any()).row(0).count(True)


def _column(blocks: Blocks, name: str) -> np.ndarray:
    return np.ascontiguousarray(blocks.frame[name].cast(pl.Float64).to_numpy())


COMPILED: dict[str, Callable[[Blocks], np.ndarray]] = {
    "ema_20": lambda b: _ema_last(_column(b, "close"), b.starts, b.ends, 2.0 / 21.0, 20),
    "rsi_14": lambda b: _rsi_last(_column(b, "close"), b.starts, b.ends, 14),
    "atr_14": lambda b: _atr_last(_column(b, "high"), _column(b, "low"), _column(b, "close"), b.starts, b.ends, 14),
}
_DEFAULTS = {spec.name: spec for spec in DEFAULT_FEATURES}
