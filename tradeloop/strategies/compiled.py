"""Compiled (numba) fast paths for strategies over wide (bars x symbols) arrays.

A strategy may offer ``compiled_signals(close)``: the same signals as its polars
``signals`` (score expression + :class:`~tradeloop.strategies.rules.ThresholdRule`), for
every symbol of a wide array in one pass, in parallel over symbol blocks. The polars path
stays the definition; ``tests/strategies/test_compiled_parity.py`` requires both paths to
give identical signals and scores within 1e-12 on the bundled real data.

Rolling sums are re-summed exactly at every tile start, so they track polars' windowed
mean to rounding over millions of bars; a score that lands within the rule's tolerance band of a threshold
fires nothing on either path, so rounding can only matter exactly at that band's edge. A slow
window summing to zero scores inf or NaN (no exception), as polars' division does.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from tradeloop.strategies.rules import cross_step
from tradeloop.strategies.signals import ENTER_LONG, ENTER_SHORT, EXIT_LONG, EXIT_SHORT

# numba's cache of these loops keys on this file only, and they compile rules.cross_step into themselves: a digest
# of tradeloop/strategies/rules.py, set anew after editing it (tests/strategies/test_rules.py says to).
RULES_SHA256 = "37f73cb8d8bac2a84ac7817e6b8875adbb1063f24e79b4f6979731ea3903abb2"

TILE_ROWS = 1024  # rows per tile: a tile of every symbol's closes stays in cache
SERIAL_CELLS = 1 << 16  # up to this many closes (or one symbol), no threads: waking them costs more


def sma_signals(
    close: np.ndarray,
    fast: int,
    slow: int,
    long_enter: float,
    long_exit: float,
    allow_short: bool,
    keep_score: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`sma_ratio_signals`, run serially for one symbol or a small input (same numbers)."""
    serial = close.shape[1] <= 1 or close.size <= SERIAL_CELLS
    run = sma_ratio_signals_serial if serial else sma_ratio_signals
    return run(close, fast, slow, long_enter, long_exit, allow_short, keep_score)


@nb.njit(cache=True, nogil=True, parallel=True)
def sma_ratio_signals(close, fast, slow, long_enter, long_exit, allow_short, keep_score):  # pragma: no cover
    """Signals of score = SMA(fast) / SMA(slow) - 1 under a threshold rule, per column.

    ``close`` is (bars, symbols), C order; a NaN close (no candle) leaves the symbol's
    windows untouched and fires nothing, exactly as the polars path on that symbol's own
    rows. Returns (signal int8 (bars, symbols), score float64: (bars, symbols) with NaN
    during warm-up when ``keep_score``, else empty).

    Symbols are split in blocks across threads (:func:`_sma_ratio_block` per block). One
    symbol, or a few short ones, go through :func:`sma_ratio_signals_serial` instead: the same
    numbers without waking a thread pool (on a busy machine that wake-up costs more than the
    work).
    """
    n, k = close.shape
    signal = np.zeros((n, k), dtype=np.int8)
    score = np.full((n, k) if keep_score else (0, 0), np.nan)
    # numba.config sets its settings at import time, unseen by type checkers; a compile-time constant here
    n_blocks = min(k, nb.config.NUMBA_NUM_THREADS)  # type: ignore[attr-defined]
    for b in nb.prange(n_blocks):
        _sma_ratio_block(
            close, b * k // n_blocks, (b + 1) * k // n_blocks, fast, slow, long_enter, long_exit, allow_short,
            keep_score, signal, score,
        )  # fmt: skip
    return signal, score


@nb.njit(cache=True, nogil=True)
def sma_ratio_signals_serial(close, fast, slow, long_enter, long_exit, allow_short, keep_score):  # pragma: no cover
    """:func:`sma_ratio_signals` on the calling thread, every symbol in one block (same numbers).

    One symbol without a gap goes through :func:`_sma_ratio_column` (the same numbers again).
    """
    n, k = close.shape
    signal = np.zeros((n, k), dtype=np.int8)
    score = np.full((n, k) if keep_score else (0, 0), np.nan)
    if k == 1:
        column_score = score[:, 0] if keep_score else np.empty(0)
        if _sma_ratio_column(
            close[:, 0], fast, slow, long_enter, long_exit, allow_short, keep_score, signal[:, 0], column_score
        ):
            return signal, score
        signal[:] = 0  # a gap: the block, from the start
        score[:] = np.nan
    _sma_ratio_block(close, 0, k, fast, slow, long_enter, long_exit, allow_short, keep_score, signal, score)
    return signal, score


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _sma_ratio_column(x, fast, slow, long_enter, long_exit, allow_short, keep_score, signal, score):  # pragma: no cover
    """:func:`_sma_ratio_block` for one symbol's closes ``x`` without a NaN, into its ``signal``
    (zeros: only the bars that fire are written) and ``score`` columns; False (stopped, the
    columns partly written) after a tile with a NaN.

    No gap, so the window is the last rows of ``x`` itself: no ring of closes, the state in
    registers. The same sums in the same order as the block (re-summed from the window at
    every tile start, then ``sum += x[t] - x[t - window]``), so the same bits. A NaN close
    makes the slow sum NaN until the tile ends, so one test per tile finds it. The loop is
    compiled once per (``allow_short``, ``keep_score``), constants there.
    """
    if keep_score:
        if allow_short:
            return _column_tiles(x, fast, slow, long_enter, long_exit, True, True, signal, score)
        return _column_tiles(x, fast, slow, long_enter, long_exit, False, True, signal, score)
    if allow_short:
        return _column_tiles(x, fast, slow, long_enter, long_exit, True, False, signal, score)
    return _column_tiles(x, fast, slow, long_enter, long_exit, False, False, signal, score)


@nb.njit(cache=True, inline="always", error_model="numpy")
def _column_tiles(x, fast, slow, long_enter, long_exit, allow_short, keep_score, signal, score):  # pragma: no cover
    """The loop of :func:`_sma_ratio_column`."""
    n = x.shape[0]
    long_side = 0
    short_side = 0
    for t0 in range(0, n, TILE_ROWS):
        sum_f = 0.0
        for d in range(1, min(t0, fast) + 1):
            sum_f += x[t0 - d]
        sum_s = sum_f
        for d in range(fast + 1, min(t0, slow) + 1):
            sum_s += x[t0 - d]
        for t in range(t0, min(n, t0 + TILE_ROWS)):
            v = x[t]
            sum_f += v - (x[t - fast] if t >= fast else 0.0)
            sum_s += v - (x[t - slow] if t >= slow else 0.0)
            if t + 1 < slow:
                continue
            r = (sum_f * slow) / (sum_s * fast) - 1.0
            if keep_score:
                score[t] = r
            flags = 0
            zone = 1 if r > long_enter else (-1 if r < long_exit else 0)
            if zone != long_side:  # the rule can fire (cross_step of the side held changes nothing)
                flags, long_side = cross_step(zone, long_side, ENTER_LONG, EXIT_LONG)
            if allow_short:
                zone = 1 if r < -long_enter else (-1 if r > -long_exit else 0)
                if zone != short_side:
                    short_flags, short_side = cross_step(zone, short_side, ENTER_SHORT, EXIT_SHORT)
                    flags |= short_flags
            if flags != 0:
                signal[t] = flags
        if sum_s != sum_s:
            return False
    return True


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _sma_ratio_block(
    close, j0, j1, fast, slow, long_enter, long_exit, allow_short, keep_score, signal, score
):  # pragma: no cover
    """Symbols ``j0..j1`` of :func:`sma_ratio_signals`, into ``signal`` and ``score``.

    Work goes by tiles of ``TILE_ROWS`` rows, symbol by symbol inside a tile. Running window
    sums are re-summed exactly from the window at every tile start, so rounding never
    accumulates past one tile; symbols are independent, so how they are split in blocks
    does not change a number.
    """
    n = close.shape[0]
    m = j1 - j0
    ring = np.zeros((m, slow))  # last ``slow`` closes per symbol
    head = np.zeros(m, dtype=np.int64)  # ring slot of the next close
    count = np.zeros(m, dtype=np.int64)
    sides = np.zeros((m, 2), dtype=np.int64)  # long side, short side (see rules)
    for t0 in range(0, n, TILE_ROWS):
        t1 = min(n, t0 + TILE_ROWS)
        for i in range(m):
            j = j0 + i
            win = ring[i]
            h = head[i]
            c = count[i]
            sum_f = 0.0
            for d in range(1, min(c, fast) + 1):
                sum_f += win[(h - d) % slow]
            sum_s = sum_f
            for d in range(fast + 1, min(c, slow) + 1):
                sum_s += win[(h - d) % slow]
            long_side = sides[i, 0]
            short_side = sides[i, 1]
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
            head[i] = h
            count[i] = c
            sides[i, 0] = long_side
            sides[i, 1] = short_side
