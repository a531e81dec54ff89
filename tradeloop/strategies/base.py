"""The strategy interface: features -> score per bar -> threshold rule -> signals.

A strategy is a frozen, validated config with two methods. ``score_expr`` builds a polars
expression from candle columns (through ``tradeloop.features``); ``signals`` evaluates it
per symbol and applies the rule. Backtest and live engine call the same ``signals``: the
live engine on a rolling window of the last bars. ``score_memory`` describes how far back the
score reaches (``tradeloop.features.memory``), written next to ``score_expr``; the warm-up
and the window the live engine needs (``tradeloop.thresholds.warmup``) are derived from it.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import ClassVar

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict

from tradeloop.features.memory import Memory
from tradeloop.strategies.rules import ThresholdRule


class Strategy(BaseModel, ABC):
    """Base class of every strategy. Subclasses add their parameters as fields."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: ClassVar[str]
    rule: ThresholdRule = ThresholdRule()

    @abstractmethod
    def score_expr(self) -> pl.Expr:
        """Score per bar from candle columns; larger = more bullish. Null during warm-up."""

    @property
    @abstractmethod
    def score_memory(self) -> Memory:
        """How far back ``score_expr`` reaches, built like it (see ``tradeloop.features.memory``)."""

    @property
    def warmup_bars(self) -> int:
        """Bars before the first non-null score (derived from ``score_memory``)."""
        return self.score_memory.warmup

    def scores(self, candles: pl.DataFrame, *, by: str | None = "symbol") -> pl.DataFrame:
        group = by if by is not None and by in candles.columns else None
        expr = self.score_expr()
        return candles.with_columns((expr.over(group) if group else expr).alias("score"))

    def signals(self, candles: pl.DataFrame, *, by: str | None = "symbol") -> pl.DataFrame:
        """Candles with ``score`` and int8 ``signal`` columns (per symbol when ``by`` is set)."""
        group = by if by is not None and by in candles.columns else None
        if group is not None and candles[group].n_unique() <= 1:  # one symbol: the same as no grouping
            group = None
        scored = self.scores(candles, by=group)
        if group is None:  # one series: run the compiled rule directly, no expression round trip
            return scored.with_columns(self.rule.apply(scored["score"]))
        codes = scored.select(pl.col(group).rank("dense").cast(pl.Int64) - 1).to_series().to_numpy()
        score = scored["score"].cast(pl.Float64).fill_null(float("nan")).to_numpy()
        signal = self.rule.apply_grouped(score, codes)
        return scored.with_columns(pl.Series("signal", signal, dtype=pl.Int8))

    def compiled_signals(self, columns: Mapping[str, np.ndarray]) -> np.ndarray | None:
        """int8 signals for wide (bars x symbols) candle columns in one compiled pass, or None.

        Optional fast path; it must equal ``signals`` per symbol (a parity test holds every
        override to it). None means "use the polars path", which is always correct.
        """
        return None

    def wide_signals(self, columns: Mapping[str, np.ndarray]) -> np.ndarray:
        """int8 signals (bars x symbols) for wide candle columns (``close``, ``high``, ...).

        NaN rows of a symbol are bars without a candle: they get no signal and do not count
        in that symbol's windows. Uses ``compiled_signals`` when the strategy has it, else
        the polars path per symbol on every core (polars releases the GIL).
        """
        compiled = self.compiled_signals(columns)
        if compiled is not None:
            return compiled
        close = columns["close"]
        out = np.zeros(close.shape, dtype=np.int8)

        def one(j: int) -> None:
            rows = np.flatnonzero(~np.isnan(close[:, j]))
            frame = pl.DataFrame({name: values[rows, j] for name, values in columns.items()})
            out[rows, j] = self.signals(frame, by=None)["signal"].to_numpy()

        with ThreadPoolExecutor(max_workers=min(close.shape[1], os.cpu_count() or 1) or 1) as pool:
            list(pool.map(one, range(close.shape[1])))
        return out

    def describe(self) -> str:
        params = ",".join(str(v) for v in self.model_dump(exclude={"rule"}).values())
        return f"{self.name}({params})"
