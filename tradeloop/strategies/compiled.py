"""Compiled (numba) fast paths for strategies over wide (bars x symbols) arrays.

A strategy may offer ``compiled_signals(close)``: the same signals as its polars
``signals`` (score expression + :class:`~tradeloop.strategies.rules.ThresholdRule`), for
every symbol of a wide array in one pass, in parallel over symbol blocks. The polars path
stays the definition; ``tests/strategies/test_compiled_parity.py`` requires both paths to
give identical signals and scores within 1e-12 on the bundled real data.

Rolling sums are re-summed exactly at every tile start, so they track polars' windowed
mean to rounding over millions of bars; a score that lands within the rule's tolerance band of a threshold
fires nothing on either path, so rounding can only matter exactly at that band's edge.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from tradeloop.strategies.rules import cross_step
from tradeloop.strategies.signals import ENTER_LONG, ENTER_SHORT, EXIT_LONG, EXIT_SHORT

TILE_ROWS = 1024  # rows per tile: a tile of every symbol's closes stays in cache


@nb.njit(cache=True, nogil=True, parallel=True)
def sma_ratio_signals(close, fast, slow, long_enter, long_exit, allow_short, keep_score):  # pragma: no cover
    """Signals of score = SMA(fast) / SMA(slow) - 1 under a threshold rule, per column.

    ``close`` is (bars, symbols), C order; a NaN close (no candle) leaves the symbol's
    windows untouched and fires nothing, exactly as the polars path on that symbol's own
    rows. Returns (signal int8 (bars, symbols), score float64: (bars, symbols) with NaN
    during warm-up when ``keep_score``, else empty).

    Work goes by tiles of ``TILE_ROWS`` rows, symbol by symbol inside a tile, symbols split
    across threads. Running window sums are re-summed exactly from the window at every tile
    start, so rounding never accumulates past one tile.
    """
    n, k = close.shape
    signal = np.zeros((n, k), dtype=np.int8)
    score = np.full((n, k) if keep_score else (0, 0), np.nan)
    ring = np.zeros((k, slow))  # last ``slow`` closes per symbol
    head = np.zeros(k, dtype=np.int64)  # ring slot of the next close
    count = np.zeros(k, dtype=np.int64)
    sides = np.zeros((k, 2), dtype=np.int64)  # long side, short side (see rules)
    # numba.config sets its settings at import time, unseen by type checkers; a compile-time constant here
    n_blocks = min(k, nb.config.NUMBA_NUM_THREADS)  # type: ignore[attr-defined]
    for b in nb.prange(n_blocks):
        for t0 in range(0, n, TILE_ROWS):
            t1 = min(n, t0 + TILE_ROWS)
            for j in range(b * k // n_blocks, (b + 1) * k // n_blocks):
                win = ring[j]
                h = head[j]
                c = count[j]
                sum_f = 0.0
                for d in range(1, min(c, fast) + 1):
                    sum_f += win[(h - d) % slow]
                sum_s = sum_f
                for d in range(fast + 1, min(c, slow) + 1):
                    sum_s += win[(h - d) % slow]
                long_side = sides[j, 0]
                short_side = sides[j, 1]
                for t in range(t0, t1):
                    x = close[t, j]
                    if x != x:
                        continue
                    old_f = win[h - fast if h >= fast else h - fast + slow] if c >= fast else 0.0
                    old_s = win[h] if c >= slow else 0.0
                    win[h] = x
                    h = h + 1 if h + 1 < slow else 0
                    c += 1
                    sum_f += x - old_f
                    sum_s += x - old_s
                    if c < slow:
                        continue
                    v = (sum_f * slow) / (sum_s * fast) - 1.0
                    if keep_score:
                        score[t, j] = v
                    zone = 1 if v > long_enter else (-1 if v < long_exit else 0)
                    flags, long_side = cross_step(zone, long_side, ENTER_LONG, EXIT_LONG)
                    if allow_short:
                        zone = 1 if v < -long_enter else (-1 if v > -long_exit else 0)
                        short_flags, short_side = cross_step(zone, short_side, ENTER_SHORT, EXIT_SHORT)
                        flags |= short_flags
                    signal[t, j] = flags
                head[j] = h
                count[j] = c
                sides[j, 0] = long_side
                sides[j, 1] = short_side
    return signal, score
