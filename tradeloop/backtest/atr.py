"""Wilder's average true range for the ATR stops: (bars, symbols) in, (bars, symbols) out.

Rules, per symbol, over the symbol's own candles (the rows where its high, low and close
are all finite), ``n = window``:

- ``TR_i = max(high_i - low_i, |high_i - close_{i-1}|, |low_i - close_{i-1}|)`` with
  ``close_{i-1}`` the close of the symbol's previous candle; its first candle has no TR.
- The first ATR is at the symbol's ``(n + 1)``-th candle: ``(TR_2 + ... + TR_{n+1}) / n``,
  summed in that order.
- Then Wilder's smoothing: ``ATR_i = (ATR_{i-1} * (n - 1) + TR_i) / n``.
- NaN before the first ATR; a row where the symbol has no candle carries its last ATR, so
  "the ATR at the previous bar" is the one at the symbol's last candle.

The value depends on the first candle of the history (the seed), so the live engine must
start from the same candle as the backtest, keep :class:`WilderAtr`'s state, and feed it
every closed candle to reproduce the numbers exactly. This is the classic seeded ATR;
``tradeloop.features.indicators.atr`` (an exponential mean seeded at the first TR, a
feature for strategies) is a different number for the first few hundred bars.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

from tradeloop.errors import ConfigError


def true_range(high: float, low: float, prev_close: float) -> float:
    """``max(high - low, |high - prev_close|, |low - prev_close|)``."""
    return max(high - low, abs(high - prev_close), abs(low - prev_close))


def atr_step(prev_atr: float, tr: float, window: int) -> float:
    """One step of Wilder's smoothing: ``(prev_atr * (window - 1) + tr) / window``."""
    return (prev_atr * (window - 1) + tr) / window


_true_range = nb.njit(cache=True, inline="always")(true_range)
_atr_step = nb.njit(cache=True, inline="always")(atr_step)


@nb.njit(cache=True, nogil=True)
def _wilder(high, low, close, window, out):
    n, k = close.shape
    value = np.full(k, np.nan)
    prev_close = np.full(k, np.nan)
    seen = np.zeros(k, dtype=np.int64)  # candles of each symbol so far
    total = np.zeros(k)
    for t in range(n):  # row by row: the arrays are C order
        for j in range(k):
            h, lo, c = high[t, j], low[t, j], close[t, j]
            if np.isfinite(h) and np.isfinite(lo) and np.isfinite(c):
                m = seen[j]
                if m > 0:
                    tr = _true_range(h, lo, prev_close[j])
                    if m <= window:
                        total[j] += tr
                        if m == window:
                            value[j] = total[j] / window
                    else:
                        value[j] = _atr_step(value[j], tr, window)
                seen[j] = m + 1
                prev_close[j] = c
            out[t, j] = value[j]
    return out


def wilder_atr(high: np.ndarray, low: np.ndarray, close: np.ndarray, *, window: int = 14) -> np.ndarray:
    """Wilder's ATR of each column (the module's rules); 1-D input gives 1-D output.

    Parameters
    ----------
    high, low, close
        Arrays of one shape, ``(bars,)`` or ``(bars, symbols)``; NaN where a symbol has no candle.
    window
        Bars in the average, ``>= 1``: 14 is Wilder's.

    Returns
    -------
    numpy.ndarray
        float64, the shape of ``close``: NaN until each symbol's ``window + 1``-th candle.
    """
    if window < 1:
        raise ConfigError(f"atr window={window} must be at least 1; e.g. window=14")
    h, lo, c = (np.asarray(a, dtype=np.float64) for a in (high, low, close))
    if not h.shape == lo.shape == c.shape:
        raise ConfigError(f"high, low and close differ in shape: {h.shape}, {lo.shape}, {c.shape}")
    flat = c.ndim == 1
    if flat:
        h, lo, c = h[:, None], lo[:, None], c[:, None]
    out = _wilder(h, lo, c, int(window), np.empty(c.shape))
    return out[:, 0] if flat else out


class WilderAtr:
    """Incremental ATR of one symbol, equal to :func:`wilder_atr` candle by candle.

    >>> atr = WilderAtr(window=2)
    >>> [atr.update(high=h, low=l, close=c) for h, l, c in [(10, 8, 9), (11, 9, 10), (12, 9, 11), (11, 10, 10)]]
    [None, None, 2.5, 1.75]
    """

    def __init__(self, *, window: int = 14):
        if window < 1:
            raise ConfigError(f"atr window={window} must be at least 1; e.g. window=14")
        self.window = window
        self._value = math.nan
        self._prev_close = math.nan
        self._seen = 0
        self._total = 0.0

    def update(self, *, high: float, low: float, close: float) -> float | None:
        """Feed one closed candle; returns the ATR at its close (``None`` while warming up).

        A candle without a finite high, low and close is skipped (the value stays).
        """
        if not (math.isfinite(high) and math.isfinite(low) and math.isfinite(close)):
            return self.value
        if self._seen > 0:
            tr = true_range(float(high), float(low), self._prev_close)
            if self._seen <= self.window:
                self._total += tr
                if self._seen == self.window:
                    self._value = self._total / self.window
            else:
                self._value = atr_step(self._value, tr, self.window)
        self._seen += 1
        self._prev_close = float(close)
        return self.value

    @property
    def value(self) -> float | None:
        """The ATR at the last candle fed, ``None`` while warming up."""
        return None if math.isnan(self._value) else self._value
