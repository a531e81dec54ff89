"""The sweep's compiled pass: every (parameter set, symbol) portfolio in one parallel loop (numba).

Inputs are ragged: the symbols' own candles one after the other (symbol ``j`` owns rows
``start[j]:start[j + 1]``, in time order, as ``(rows, 1)`` columns), and an indicator table
``ind[column, row]`` computed once per distinct window and symbol (``tradeloop.backtest.sweep``).
Combination ``c`` is parameter set ``c_param[c]`` on symbol ``c_symbol[c]``; combinations are
split across threads (``numba.prange``), each with its own signal and equity buffers.

Per combination:

1. **Score.** ``ind[a, t] / ind[b, t] - 1`` when the parameter set has a second column
   ``b >= 0`` (the SMA crossover's fast / slow - 1, the same IEEE operations as the strategy's
   polars expression, so the same bits), else ``ind[a, t]`` (a whole score computed once per
   distinct parameter set). NaN is warm-up.
2. **Signal.** The threshold rule of ``tradeloop.strategies.rules`` (its compiled
   ``cross_step``, one long and one short side), with the parameter set's bounds.
3. **Simulation.** ``tradeloop.backtest.kernel.simulate`` itself, one symbol, one portfolio,
   no risk pass: the fill, fee, stop and exit rules are the kernel's, not a copy.
4. **Metrics**, in one pass over the equity curve. Trades (open ones included, as the
   ledger), final equity, and the inputs of ``tradeloop.performance.metrics``' definitions: the
   mean and sample standard deviation (ddof = 1) of the per-bar returns measured from
   ``init_cash`` (from their sum and sum of squares: per-bar returns have a mean far below
   their spread, so the subtraction loses nothing that matters; tests hold the Sharpe ratio to
   ``sharpe_ratio``'s within 1e-9), and the max drawdown with the initial capital as the first
   peak (``drawdown_series``' minimum).

The SMA columns come from :func:`rolling_means` (one pass per window and symbol, in parallel),
the way ``tradeloop.strategies.compiled`` keeps its sums: a running sum re-summed exactly from
the window every ``TILE_ROWS`` rows, so rounding never accumulates past one tile and the means
track polars' ``rolling_mean`` to rounding (a score inside the rule's tolerance band of a
threshold fires nothing either way).

The equity curve of a combination goes to ``curves[c_param, rows]`` when ``keep_curves``,
else to a buffer dropped after step 4.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from tradeloop.backtest.kernel import simulate
from tradeloop.strategies.rules import cross_step
from tradeloop.strategies.signals import ENTER_LONG, ENTER_SHORT, ENTRIES, EXIT_LONG, EXIT_SHORT

# numba's cache of this file's functions keys on this file only, yet they compile kernel.simulate into themselves:
# a digest of tradeloop/backtest/kernel.py (which carries its own digests of fills.py, kernel_risk.py and
# kernel_exits.py), set anew after editing it (tests/backtest/test_sweep.py says to), so the sweep recompiles.
KERNEL_SHA256 = "49869c1532311e48e748810651ca543c0af71aacc76db7a0f1a85113baef31c5"
# and of tradeloop/strategies/rules.py, whose cross_step the signal step compiles in (tests/strategies/test_rules.py)
RULES_SHA256 = "37f73cb8d8bac2a84ac7817e6b8875adbb1063f24e79b4f6979731ea3903abb2"

__all__ = ["TILE_ROWS", "rolling_means", "sweep_pass"]

BLOCKS = 64  # blocks of combinations the threads share out (each allocates its buffers once)
TILE_ROWS = 1024  # rolling sums are re-summed exactly from the window at every tile start

# outputs per combination, the columns of ``sweep_pass``' float64 matrix
(S_TRADES, S_FINAL, S_RET_MEAN, S_RET_SD, S_MAX_DD) = range(5)
N_STATS = 5


@nb.njit(cache=True, parallel=True, error_model="numpy")
def rolling_means(close, start, windows, table, rows):  # pragma: no cover - compiled
    """Write the mean of each window in ``windows`` over each symbol's closes into
    ``table[rows[i]]`` (NaN until the window is full). ``close`` is ``(rows, 1)``; symbol ``j``
    owns rows ``start[j]:start[j + 1]``."""
    k = start.shape[0] - 1
    n_windows = windows.shape[0]
    for task in nb.prange(k * n_windows):
        j = task // n_windows
        i = task % n_windows
        w = windows[i]
        out = table[rows[i]]
        s0 = start[j]
        n = start[j + 1] - s0
        acc = 0.0
        for t in range(n):
            x = close[s0 + t, 0]
            if t % TILE_ROWS == 0 and t >= w:
                acc = x
                for d in range(1, w):
                    acc += close[s0 + t - d, 0]
            else:
                acc += x
                if t >= w:
                    acc -= close[s0 + t - w, 0]
            out[s0 + t] = acc / w if t >= w - 1 else np.nan


@nb.njit(cache=True, parallel=True, error_model="numpy")
def sweep_pass(  # pragma: no cover - compiled
    open_,
    high,
    low,
    close,
    start,
    ind,
    first,
    second,
    long_enter,
    long_exit,
    allow_short,
    c_param,
    c_symbol,
    size_frac,
    scalar_size,
    atr,
    init_cash,
    fee,
    slip,
    stop_loss,
    take_profit,
    trailing,
    close_at_end,
    atr_stop,
    atr_trailing,
    limit_ttl,
    limit_offset,
    maker_fee,
    keep_curves,
    curves,
):
    """Simulate each combination; returns a ``(combinations, N_STATS)`` float64 matrix (``S_*``).

    ``open_``/``high``/``low``/``close``/``atr`` are ``(rows, 1)``; ``size_frac`` is ``(rows, 1)``
    or, with ``scalar_size``, ``(1, 1)`` holding the fixed fraction; ``curves`` is
    ``(parameter sets, rows, 1)`` when ``keep_curves``, else unread. Disabled stops are NaN.
    """
    n_comb = c_param.shape[0]
    out = np.empty((n_comb, N_STATS))
    longest = 0
    for j in range(start.shape[0] - 1):
        longest = max(longest, start[j + 1] - start[j])
    n_blocks = min(n_comb, BLOCKS)
    for block in nb.prange(n_blocks):  # each block reuses its buffers: no fresh pages per combination
        group = np.zeros(1, dtype=np.int64)
        signal_buffer = np.zeros((longest, 1), dtype=np.int8)
        equity_buffer = np.empty((1, longest, 1))
        for c in range(block * n_comb // n_blocks, (block + 1) * n_comb // n_blocks):
            _one(
                c, open_, high, low, close, start, ind, first, second, long_enter, long_exit, allow_short, c_param,
                c_symbol, size_frac, scalar_size, atr, init_cash, fee, slip, stop_loss, take_profit, trailing,
                close_at_end, atr_stop, atr_trailing, limit_ttl, limit_offset, maker_fee, keep_curves, curves, out,
                group, signal_buffer, equity_buffer,
            )  # fmt: skip
    return out


@nb.njit(cache=True, error_model="numpy")
def _one(  # pragma: no cover - compiled
    c, open_, high, low, close, start, ind, first, second, long_enter, long_exit, allow_short, c_param, c_symbol,
    size_frac, scalar_size, atr, init_cash, fee, slip, stop_loss, take_profit, trailing, close_at_end, atr_stop,
    atr_trailing, limit_ttl, limit_offset, maker_fee, keep_curves, curves, out, group, signal_buffer, equity_buffer,
):  # fmt: skip
    """Combination ``c`` of :func:`sweep_pass`, its row of ``out`` written."""
    p = c_param[c]
    j = c_symbol[c]
    s0 = start[j]
    s1 = start[j + 1]
    n = s1 - s0
    # 1-2. score and signal
    signal = signal_buffer[0:n]
    a = first[p]
    b = second[p]
    le = long_enter[p]
    lx = long_exit[p]
    short = allow_short[p]
    long_side = 0
    short_side = 0
    entries = 0
    for t in range(n):
        v = ind[a, s0 + t] / ind[b, s0 + t] - 1.0 if b >= 0 else ind[a, s0 + t]
        if v != v:
            signal[t, 0] = 0
            continue
        zone = 1 if v > le else (-1 if v < lx else 0)
        flags, long_side = cross_step(zone, long_side, ENTER_LONG, EXIT_LONG)
        if short:
            zone = 1 if v < -le else (-1 if v > -lx else 0)
            short_flags, short_side = cross_step(zone, short_side, ENTER_SHORT, EXIT_SHORT)
            flags |= short_flags
        signal[t, 0] = flags
        if (flags & ENTRIES) != 0:
            entries += 1
    # 3. the backtest kernel on this symbol's rows
    if keep_curves:
        equity = curves[p, s0:s1]
    else:
        equity = equity_buffer[0, 0:n]
    frac = size_frac[0:1] if scalar_size else size_frac[s0:s1]
    _eq, trades, _cash, _in_market, _notional, _denials, _trips = simulate(
        open_[s0:s1],
        high[s0:s1],
        low[s0:s1],
        close[s0:s1],
        signal,
        frac,
        group,
        1,
        init_cash,
        fee,
        slip,
        stop_loss,
        take_profit,
        trailing,
        close_at_end,
        entries + 2,
        equity,
        atr[s0:s1],
        atr_stop,
        atr_trailing,
        limit_ttl,
        limit_offset,
        maker_fee,
        None,
    )
    # 4. metrics' inputs
    total = 0.0
    total_sq = 0.0
    prev = init_cash
    peak = init_cash
    max_dd = 0.0
    for t in range(n):
        e = equity[t, 0]
        r = e / prev - 1.0
        total += r
        total_sq += r * r
        prev = e
        if e >= peak:  # a new peak: drawdown 0
            peak = e
        else:
            dd = e / peak - 1.0
            if dd < max_dd:
                max_dd = dd
    mean = total / n if n > 0 else np.nan
    sq = max(total_sq - total * mean, 0.0)  # the sum of squared deviations from the mean
    out[c, S_TRADES] = trades.shape[0]
    out[c, S_FINAL] = equity[n - 1, 0] if n > 0 else np.nan
    out[c, S_RET_MEAN] = mean
    out[c, S_RET_SD] = np.sqrt(sq / (n - 1)) if n > 1 else np.nan
    out[c, S_MAX_DD] = max_dd
