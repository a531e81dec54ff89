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

import numba as nb
import numpy as np
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

    def band(self, level: float) -> float:
        return self.tolerance * max(1.0, abs(level))

    def bounds(self) -> tuple[float, float]:
        """(long-entry bound, long-exit bound), the tolerance band included."""
        return self.entry + self.band(self.entry), self.exit - self.band(self.exit)

    def signal_expr(self, score: str | pl.Expr = "score") -> pl.Expr:
        """int8 signal bit set per row of one series (see ``tradeloop.strategies.signals``);
        many symbols at once: :meth:`apply_grouped`, as ``Strategy.signals`` does."""
        s = pl.col(score) if isinstance(score, str) else score
        return s.map_batches(self.apply, return_dtype=pl.Int8).alias("signal")

    def apply(self, scores: pl.Series | np.ndarray) -> pl.Series:
        """The rule over one symbol's scores in time order (nulls/NaN are warm-up)."""
        if isinstance(scores, pl.Series):  # nulls -> NaN first: to_numpy's own null path is slow
            values = scores.cast(pl.Float64).fill_null(float("nan")).to_numpy()
        else:
            values = scores
        out = _crossings(
            np.ascontiguousarray(values, dtype=np.float64),
            *self.bounds(),
            self.allow_short,
        )
        return pl.Series("signal", out, dtype=pl.Int8)

    def last_signals(self, scores: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The rule's signal at the last row (``ends``, inclusive) of each run of ``scores``
        that starts at ``starts``, and whether it is settled: every side of the rule saw a zone
        at an earlier row of the run. A settled signal is the one the rule gives on any longer
        history ending with the run (a side is the last zone it saw); an unsettled one may
        differ (the longer history may hold an earlier zone). One compiled backward scan."""
        return _last_crossings(
            np.ascontiguousarray(scores, dtype=np.float64),
            np.ascontiguousarray(starts, dtype=np.int64),
            np.ascontiguousarray(ends, dtype=np.int64),
            *self.bounds(),
            self.allow_short,
        )

    def apply_grouped(self, scores: np.ndarray, groups: np.ndarray) -> np.ndarray:
        """The rule over many symbols at once: ``groups`` holds each row's symbol code (0..n-1);
        rows of one symbol must be in time order, symbols may interleave. One compiled pass."""
        return _crossings_grouped(
            np.ascontiguousarray(scores, dtype=np.float64),
            np.ascontiguousarray(groups, dtype=np.int64),
            *self.bounds(),
            self.allow_short,
        )


@nb.njit(cache=True, inline="always")
def cross_step(zone, side, enter_flag, exit_flag):  # pragma: no cover - compiled
    """(flag fired, new side) for one side of the rule: a zone entered from the opposite one."""
    if zone == 0:
        return 0, side
    if zone == 1 and side == -1:
        return enter_flag, zone
    if zone == -1 and side == 1:
        return exit_flag, zone
    return 0, zone


@nb.njit(cache=True)
def _crossings(score, long_enter, long_exit, allow_short):  # pragma: no cover - compiled
    """One pass of the zone state machine; see the module docstring for the rule."""
    return _crossings_grouped(score, np.zeros(score.size, dtype=np.int64), long_enter, long_exit, allow_short)


@nb.njit(cache=True)
def _crossings_grouped(score, group, long_enter, long_exit, allow_short):  # pragma: no cover - compiled
    """The zone state machine with one state per group (symbol)."""
    out = np.zeros(score.size, dtype=np.int8)
    n_groups = group.max() + 1 if group.size else 0
    long_side = np.zeros(n_groups, dtype=np.int64)  # last zone seen: +1 entry, -1 exit, 0 none yet
    short_side = np.zeros(n_groups, dtype=np.int64)
    for i in range(score.size):
        s = score[i]
        if s != s:
            continue
        g = group[i]
        zone = 1 if s > long_enter else (-1 if s < long_exit else 0)
        flags, long_side[g] = cross_step(zone, long_side[g], ENTER_LONG, EXIT_LONG)
        if allow_short:
            zone = 1 if s < -long_enter else (-1 if s > -long_exit else 0)
            short_flags, short_side[g] = cross_step(zone, short_side[g], ENTER_SHORT, EXIT_SHORT)
            flags |= short_flags
        out[i] = flags
    return out


@nb.njit(cache=True, inline="always")
def _zones(s, long_enter, long_exit):  # pragma: no cover - compiled
    """(long zone, short zone) of one score; 0 for NaN (comparisons fail) and the neutral band."""
    long_zone = 1 if s > long_enter else (-1 if s < long_exit else 0)
    short_zone = 1 if s < -long_enter else (-1 if s > -long_exit else 0)
    return long_zone, short_zone


@nb.njit(cache=True)
def _last_crossings(score, starts, ends, long_enter, long_exit, allow_short):  # pragma: no cover - compiled
    """Per run: the flags at its last row and whether both sides were settled before it."""
    flags = np.zeros(starts.size, dtype=np.int8)
    settled = np.zeros(starts.size, dtype=np.bool_)
    for j in range(starts.size):
        long_side = 0
        short_side = 0 if allow_short else 2  # 2: a side that needs no history
        i = ends[j] - 1
        while i >= starts[j] and (long_side == 0 or short_side == 0):
            long_zone, short_zone = _zones(score[i], long_enter, long_exit)
            if long_side == 0:
                long_side = long_zone
            if short_side == 0:
                short_side = short_zone
            i -= 1
        settled[j] = long_side != 0 and short_side != 0
        s = score[ends[j]]
        if s != s:
            continue
        long_zone, short_zone = _zones(s, long_enter, long_exit)
        out, _ = cross_step(long_zone, long_side, ENTER_LONG, EXIT_LONG)
        if allow_short:
            short_flags, _ = cross_step(short_zone, short_side, ENTER_SHORT, EXIT_SHORT)
            out |= short_flags
        flags[j] = out
    return flags, settled
