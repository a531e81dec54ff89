"""How far back a feature reaches, described like its expression, and the two numbers derived
from that description.

A value at bar ``t`` is computed from bars ``<= t`` (indicators are causal). What matters to
a caller that evaluates it on a rolling window of the last ``W`` bars, as the live engine does:

* ``warmup``: the leading bars that are null on a fresh history (a rolling window not full
  yet, an EWM that has seen fewer than ``min_samples`` values).
* ``exact_bars(tol)``: the smallest ``W`` for which the value at the window's last bar equals
  the value computed on the whole history, within ``tol``. A finite window (SMA, rolling std,
  a shift) reads a fixed span, so it is exact once full (up to the rounding of polars' running
  sums, ~1e-16 relative; a z-score's division ~1e-13). An exponential
  recursion (``ewm_mean(adjust=False)``: EMA, Wilder's RSI and ATR) is seeded at the first bar
  it sees, so it remembers where the history starts. Its state on the window and on the full
  history are both weighted means of the input, so they differ at the seed by at most the
  input's spread (max - min over the history); every bar with an exact input shrinks that
  gap by ``1 - alpha``. After ``k = ceil(log(tol) / log(1 - alpha))`` exact inputs it is below
  ``tol`` times the spread. The window must also be long enough for the EWM's own
  ``min_samples`` (else the value is still null).

``TOLERANCE`` is 1e-12, relative to that spread: far below anything a threshold or a
classifier can resolve, a little above float64 rounding of the recursion. A ratio of smoothed
values amplifies it (RSI, gains over losses: measured at most 1.3e-11 relative on the bundled
sample, ``tests/features/test_memory.py`` holds it within 1e-9). Composite features
take the longest of their parts (an elementwise combination reads all of them at bar ``t``);
a chain adds up (a rolling window of ``n`` values of ``x`` needs ``x``'s span for its oldest
value, ``n - 1`` bars before the newest).

Build a description with :meth:`Memory.bars` (a bar and the ``n - 1`` before it: a candle
column is ``bars(1)``, ``close / close.shift(1)`` or ``diff`` is ``bars(2)``), then chain
:meth:`Memory.rolling`, :meth:`Memory.shift`, :meth:`Memory.ewm`, and mix with
:meth:`Memory.combine` (``nulls="all"`` for ``max_horizontal``, which skips nulls).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from tradeloop.errors import ConfigError

TOLERANCE = 1e-12  # relative to the spread of a smoothed input; see the module docstring


def ewm_bars(alpha: float, tol: float = TOLERANCE) -> int:
    """Bars of exact input after which an ``adjust=False`` EWM's seed error is below ``tol``
    (relative to its input's spread): ``ceil(log(tol) / log(1 - alpha))``; 0 when ``alpha == 1``."""
    if not 0.0 < alpha <= 1.0:
        raise ConfigError(f"alpha={alpha} must lie in (0, 1]; e.g. 1/14 for Wilder's 14-bar smoothing")
    if not 0.0 < tol < 1.0:
        raise ConfigError(f"tol={tol} must lie in (0, 1); e.g. {TOLERANCE}")
    if alpha == 1.0:
        return 0
    return math.ceil(math.log(tol) / math.log1p(-alpha))


@dataclass(frozen=True, slots=True)
class Memory:
    """The memory of an expression; build it with the class's constructors, not by hand.

    ``kind``: ``bars`` (``n`` consecutive bars of candle columns), ``window`` (``n``
    consecutive values of ``parts[0]``: a rolling window or a shift), ``ewm`` (exponential
    smoothing of ``parts[0]`` with ``alpha``, null until ``n`` values) or ``combine``
    (elementwise: null when any part is null, or with ``nulls="all"`` only when all are).
    """

    kind: Literal["bars", "window", "ewm", "combine"]
    n: int = 1
    alpha: float = 0.0
    parts: tuple[Memory, ...] = ()
    nulls: Literal["any", "all"] = "any"

    # ------------------------------------------------------------------ constructors
    @staticmethod
    def bars(n: int = 1) -> Memory:
        """Bar ``t`` and the ``n - 1`` bars before it, read directly (no smoothing)."""
        _positive("n", n)
        return Memory("bars", n=n)

    def rolling(self, n: int) -> Memory:
        """A rolling window of ``n`` values of this expression (null until it is full)."""
        _positive("n", n)
        return Memory("window", n=n, parts=(self,))

    def shift(self, k: int) -> Memory:
        """This expression ``k`` bars ago (``k >= 0``)."""
        if not isinstance(k, int) or k < 0:
            raise ConfigError(f"k={k!r} must be a whole number of bars, 0 or more")
        return Memory("window", n=k + 1, parts=(self,))

    def ewm(self, *, alpha: float | None = None, span: int | None = None, min_samples: int = 1) -> Memory:
        """``ewm_mean(adjust=False)`` of this expression: ``alpha``, or ``span`` (alpha = 2 / (span + 1))."""
        if alpha is None and span is not None:
            _positive("span", span)
            alpha = 2.0 / (span + 1.0)
        elif alpha is None or span is not None:
            raise ConfigError(f"give alpha or span, not both or neither (alpha={alpha}, span={span})")
        ewm_bars(alpha)  # validates alpha
        _positive("min_samples", min_samples)
        return Memory("ewm", n=min_samples, alpha=float(alpha), parts=(self,))

    @staticmethod
    def combine(*parts: Memory, nulls: Literal["any", "all"] = "any") -> Memory:
        """An elementwise mix of ``parts`` at the same bar (arithmetic: ``nulls="any"``)."""
        if not parts:
            raise ConfigError("combine needs at least one part")
        if nulls not in ("any", "all"):
            raise ConfigError(f"nulls={nulls!r}: use 'any' (arithmetic) or 'all' (max_horizontal)")
        return Memory("combine", parts=tuple(parts), nulls=nulls)

    # ------------------------------------------------------------------ derived
    @property
    def warmup(self) -> int:
        """Leading null bars on a fresh history."""
        if self.kind == "bars":
            return self.n - 1
        if self.kind in ("window", "ewm"):
            return self.parts[0].warmup + self.n - 1
        inner = [p.warmup for p in self.parts]
        return max(inner) if self.nulls == "any" else min(inner)

    def exact_bars(self, tol: float = TOLERANCE) -> int:
        """Bars of history (the last one included) on which the value at the last bar equals
        the full-history value within ``tol`` (exactly, for finite windows)."""
        if self.kind == "bars":
            return self.n
        if self.kind == "window":
            return self.parts[0].exact_bars(tol) + self.n - 1
        if self.kind == "ewm":  # exact inputs from bar parts[0].exact_bars: k of them to forget the seed
            return max(self.parts[0].exact_bars(tol) + ewm_bars(self.alpha, tol), self.warmup + 1)
        return max(p.exact_bars(tol) for p in self.parts)

    @property
    def finite(self) -> bool:
        """True when no exponential smoothing is involved: exact once non-null."""
        return self.kind != "ewm" and all(p.finite for p in self.parts)


def _positive(name: str, value: int) -> None:
    if not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name}={value!r} must be a positive whole number of bars")
