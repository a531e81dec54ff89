"""Threshold rules: turn a score per bar into entry and exit signals.

A rule defines zones on the score. Long zone: ``score > entry``; long-exit zone:
``score < exit``. Short zones mirror them: ``score < -entry`` and ``score > -exit``.
A signal fires on a *crossing* into a zone: the bar where the score is in the zone and the
last bar that was in either zone of that side was in the opposite one. So:

* the first warm bar never fires (there is no earlier side to cross from);
* an exact tie with a threshold (within ``tolerance``, relative) is in neither zone: it
  neither fires nor resets the side, the crossing fires on the first bar strictly past it;
* after a stop-loss closes a position the rule does not re-enter until the score crosses
  into the entry zone again.

For the SMA crossover (score = fast/slow - 1, entry = exit = 0) this is exactly "fast
crosses strictly above / below slow; ties do nothing".
"""

from __future__ import annotations

import polars as pl
from pydantic import BaseModel, ConfigDict, Field, model_validator

from tradeloop.strategies.signals import ENTER_LONG, ENTER_SHORT, EXIT_LONG, EXIT_SHORT


class ThresholdRule(BaseModel):
    """Entry/exit thresholds on a strategy score (``exit <= entry``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    entry: float = 0.0
    exit: float = 0.0
    allow_short: bool = False
    tolerance: float = Field(default=1e-12, ge=0.0, lt=1e-3)

    @model_validator(mode="after")
    def _ordered(self) -> ThresholdRule:
        if self.exit > self.entry:
            raise ValueError(
                f"exit={self.exit} is above entry={self.entry}; a rule needs exit <= entry "
                "(hysteresis), e.g. entry=1.0, exit=0.0"
            )
        return self

    def _band(self, level: float) -> float:
        return self.tolerance * max(1.0, abs(level))

    def signal_expr(self, score: str | pl.Expr = "score", *, by: str | None = None) -> pl.Expr:
        """int8 signal bit set per row (see ``tradeloop.strategies.signals``)."""
        s = pl.col(score) if isinstance(score, str) else score
        over = (lambda e: e.over(by)) if by else (lambda e: e)

        def crossing(zone: pl.Expr) -> tuple[pl.Expr, pl.Expr]:
            prev = over(zone.forward_fill().shift(1))
            return (zone == 1) & (prev == -1), (zone == -1) & (prev == 1)

        long_zone = (
            pl.when(s > self.entry + self._band(self.entry)).then(1)
            .when(s < self.exit - self._band(self.exit)).then(-1)
            .otherwise(None)
        )
        enter_long, exit_long = crossing(long_zone)
        signal = (
            enter_long.cast(pl.Int8).fill_null(0) * ENTER_LONG
            + exit_long.cast(pl.Int8).fill_null(0) * EXIT_LONG
        )
        if self.allow_short:
            short_zone = (
                pl.when(s < -self.entry - self._band(self.entry)).then(1)
                .when(s > -self.exit + self._band(self.exit)).then(-1)
                .otherwise(None)
            )
            enter_short, exit_short = crossing(short_zone)
            signal = (
                signal
                + enter_short.cast(pl.Int8).fill_null(0) * ENTER_SHORT
                + exit_short.cast(pl.Int8).fill_null(0) * EXIT_SHORT
            )
        return signal.cast(pl.Int8).alias("signal")
