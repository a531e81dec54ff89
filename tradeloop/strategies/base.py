"""The strategy interface: features -> score per bar -> threshold rule -> signals.

A strategy is a frozen, validated config with two methods. ``score_expr`` builds a polars
expression from candle columns (through ``tradeloop.features``); ``signals`` evaluates it
per symbol and applies the rule. Backtest and live engine call the same ``signals``: the
live engine on a rolling window of ``warmup_bars + 1`` bars or more, which gives the same
last score as the full history because strategies use finite-window features only.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import polars as pl
from pydantic import BaseModel, ConfigDict

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
    def warmup_bars(self) -> int:
        """Bars before the first non-null score (the live engine keeps at least this + 2)."""

    def scores(self, candles: pl.DataFrame, *, by: str | None = "symbol") -> pl.DataFrame:
        group = by if by is not None and by in candles.columns else None
        expr = self.score_expr()
        return candles.with_columns((expr.over(group) if group else expr).alias("score"))

    def signals(self, candles: pl.DataFrame, *, by: str | None = "symbol") -> pl.DataFrame:
        """Candles with ``score`` and int8 ``signal`` columns (per symbol when ``by`` is set)."""
        group = by if by is not None and by in candles.columns else None
        scored = self.scores(candles, by=group)
        if group is None:  # one series: run the compiled rule directly, no expression round trip
            return scored.with_columns(self.rule.apply(scored["score"]))
        return scored.with_columns(self.rule.signal_expr("score", by=group))

    def describe(self) -> str:
        params = ",".join(str(v) for v in self.model_dump(exclude={"rule"}).values())
        return f"{self.name}({params})"
