"""The bundled strategies: SMA crossover, trend/momentum, mean reversion, breakout."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import ClassVar

import numpy as np
import polars as pl
from pydantic import Field, model_validator

from tradeloop.features import indicators as ind
from tradeloop.features.memory import Memory
from tradeloop.strategies.base import Strategy
from tradeloop.strategies.compiled import sma_signals
from tradeloop.strategies.rules import ThresholdRule


class SmaCross(Strategy):
    """Long when the fast SMA crosses above the slow one; exit when it crosses below.

    Score = fast / slow - 1, rule entry = exit = 0. An exact tie (fast == slow within the
    rule's relative tolerance) never fires a signal.
    """

    name: ClassVar[str] = "sma_cross"
    fast: int = Field(default=10, ge=1, description="bars in the fast moving average, below slow, e.g. 10")
    slow: int = Field(default=30, ge=2, description="bars in the slow moving average, e.g. 30")

    @model_validator(mode="after")
    def _fast_below_slow(self) -> SmaCross:
        if self.fast >= self.slow:
            raise ValueError(f"fast={self.fast} must be shorter than slow={self.slow}")
        return self

    def score_expr(self) -> pl.Expr:
        return ind.sma(self.fast) / ind.sma(self.slow) - 1.0

    @property
    def score_memory(self) -> Memory:
        return Memory.bars(1).rolling(self.slow)  # the slow window holds the fast one

    def compiled_signals(self, columns: Mapping[str, np.ndarray]) -> np.ndarray:
        long_enter, long_exit = self.rule.bounds()
        closes = np.ascontiguousarray(columns["close"], dtype=np.float64)
        signal, _score = sma_signals(closes, self.fast, self.slow, long_enter, long_exit, self.rule.allow_short, False)
        return signal


class Momentum(Strategy):
    """Time-series momentum: the n-bar log return in units of its own volatility.

    Score = log(close / close[n]) / (std(log returns, n) * sqrt(n)), a t-like statistic.
    Enter when it exceeds ``rule.entry`` (trend confirmed), leave when it falls below ``exit``.
    """

    name: ClassVar[str] = "momentum"
    lookback: int = Field(default=48, ge=2, description="bars of the return and its volatility, e.g. 48")
    rule: ThresholdRule = ThresholdRule(entry=1.0, exit=0.0)

    def score_expr(self) -> pl.Expr:
        move = ind.log_returns(n=self.lookback)
        scale = ind.volatility(self.lookback) * math.sqrt(self.lookback)
        return move / scale

    @property
    def score_memory(self) -> Memory:
        move = Memory.bars(self.lookback + 1)  # close and close ``lookback`` bars ago
        return Memory.combine(move, Memory.bars(2).rolling(self.lookback))  # / std of log returns


class MeanReversion(Strategy):
    """Buy stretched dips: score = -zscore(close, n); enter above ``entry``, exit at the mean."""

    name: ClassVar[str] = "mean_reversion"
    window: int = Field(default=48, ge=3, description="bars of the z-score window, e.g. 48")
    rule: ThresholdRule = ThresholdRule(entry=2.0, exit=0.0)

    def score_expr(self) -> pl.Expr:
        return -ind.zscore(self.window)

    @property
    def score_memory(self) -> Memory:
        return Memory.bars(1).rolling(self.window)


class Breakout(Strategy):
    """Donchian breakout: where the close sits in the previous n-bar high/low channel.

    Score = (close - mid) / half-width of the channel of the *previous* ``window`` bars,
    so > 1 is a close above the prior high. Enter above ``entry`` (1.0), exit below ``exit``
    (0.0: back to the channel middle).
    """

    name: ClassVar[str] = "breakout"
    window: int = Field(default=55, ge=2, description="bars of the prior high/low channel, e.g. 55")
    rule: ThresholdRule = ThresholdRule(entry=1.0, exit=0.0)

    def score_expr(self) -> pl.Expr:
        high = ind.rolling_high(self.window).shift(1)
        low = ind.rolling_low(self.window).shift(1)
        mid = (high + low) / 2.0
        half = (high - low) / 2.0
        # a flat channel (half == 0) scores 0: no breakout is possible from zero width
        return pl.when(half > 0).then((pl.col("close") - mid) / half).when(half == 0).then(0.0)

    @property
    def score_memory(self) -> Memory:
        return Memory.bars(1).rolling(self.window).shift(1)  # the channel of the previous bars
