"""The compiled simulation loop for the plain case: ``kernel.simulate``'s numbers, one symbol at a time.

``tradeloop.backtest.kernel.simulate`` is the definition; this loop gives the same outputs (the
same equity, trade matrix, cash, bars in market and traded notional, bit for bit) for the runs
that use none of its per-bar machinery, the **plain case** (:func:`is_plain`):

- market entries only (no ``entry_order='limit'``), no stop-loss, take-profit, trailing or ATR
  stop, no risk pass (``risk=None`` or a bypassed ``RiskConfig``);
- every portfolio holds one symbol (``cash_sharing=False``, or one symbol).

Sizing is read as the general kernel reads it (a scalar or a per-bar ``size_frac``, so
``vol_target`` and ``correlation`` sizing qualify), shorts and reversals too. With one symbol
per portfolio nothing links the symbols, so each one runs its whole history alone with its
state in registers (the general kernel goes bar by bar over arrays of every symbol's state:
~3x the time per bar for one series). Its rules are ``kernel``'s 1-3, 6 and 7, unchanged:
the fills and their cash are ``tradeloop.backtest.kernel_exits``' (shared with the general
kernel, as is the end of data); only the order of the trade records is restored afterwards,
bar by bar and symbol by symbol within a bar, as the general kernel writes them.

numba's cache keys on this file only: ``EXITS_SHA256`` below is the digest of
tradeloop/backtest/kernel_exits.py (whose functions it inlines), set anew after editing it
(tests/backtest/test_fills.py says to).
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

from tradeloop.backtest import kernel_exits
from tradeloop.backtest.config import KernelScalars
from tradeloop.backtest.fills import SIGNAL
from tradeloop.backtest.kernel_exits import N_TRADE_FIELDS, T_EXIT_BAR
from tradeloop.strategies.signals import ENTER_LONG, ENTER_SHORT, EXIT_LONG, EXIT_SHORT

__all__ = ["is_plain", "simulate_plain"]

EXITS_SHA256 = "808ffca408b6c5394790b6f2e479fa1b1058174528a84df0e9b4c5708ab7b18c"
# and of tradeloop/backtest/fills.py, whose SIGNAL constant is compiled in (tests/backtest/test_fills.py says to)
FILLS_SHA256 = "bcf22b41089bb4ee078a72311e5c1ac3b1b070c26769cef198265e640c7d11c7"
_entry_qty = kernel_exits.entry_qty
_entry_cash = kernel_exits.entry_cash
_exit_cash = kernel_exits.exit_cash
_record = kernel_exits.record
_end_of_data = kernel_exits.end_of_data
_EL, _ES, _XL, _XS = ENTER_LONG, ENTER_SHORT, EXIT_LONG, EXIT_SHORT


def is_plain(scalars: KernelScalars, risk: tuple | None, *, one_symbol_per_portfolio: bool) -> bool:
    """Whether :func:`simulate_plain` gives ``kernel.simulate``'s outputs for this run.

    ``scalars`` are the config's (``BacktestConfig.kernel_scalars``), ``risk`` the kernel's risk
    argument (``None``: no risk pass).
    """
    return (
        risk is None
        and one_symbol_per_portfolio
        and scalars.limit_ttl_bars == 0
        and math.isnan(scalars.stop_loss)
        and math.isnan(scalars.take_profit)
        and math.isnan(scalars.trailing_stop)
        and math.isnan(scalars.atr_stop)
        and math.isnan(scalars.atr_trailing)
    )


@nb.njit(cache=True, nogil=True, error_model="numpy")
def simulate_plain(
    open_, close, signal, size_frac, group, n_groups, init_cash, fee, slip, close_at_end, max_trades, equity
):  # pragma: no cover - compiled
    """``kernel.simulate`` for the plain case (see the module docstring), the same arguments less
    the unused ones and the same returns (no denials, no trips); ``group[j]`` is symbol ``j``'s
    portfolio, one symbol each."""
    n, k = close.shape
    scalar_size = size_frac.shape[0] == 1 and size_frac.shape[1] == 1
    trades = np.empty((max_trades, N_TRADE_FIELDS))
    cash = np.full(n_groups, init_cash)
    in_market = np.zeros(n_groups, dtype=np.int64)
    notional = np.zeros(n_groups)
    # each symbol's state after its last bar, for the end of data
    pos = np.zeros(k)
    entry_price = np.zeros(k)
    entry_bar = np.zeros(k, dtype=np.int64)
    entry_fee = np.zeros(k)
    last = np.full(k, np.nan)
    n_trades = 0
    for j in range(k):
        g = group[j]
        frac = size_frac[:, 0] if scalar_size else size_frac[:, j]
        n_trades = _one_symbol(
            open_[:, j], close[:, j], signal[:, j], frac, scalar_size, j, g, fee, slip, equity[:, g], trades, n_trades,
            cash, in_market, notional, pos, entry_price, entry_bar, entry_fee, last,
        )  # fmt: skip
    if k > 1:  # the general kernel's order: by exit bar, symbols in order within a bar (a stable sort)
        order = np.argsort(trades[:n_trades, T_EXIT_BAR], kind="mergesort")
        trades[:n_trades] = trades[order]
    n_trades = _end_of_data(
        trades, n_trades, pos, entry_price, entry_bar, entry_fee, equity, cash, notional, group, last, slip, fee,
        close_at_end,
    )  # fmt: skip
    return equity, trades[:n_trades], cash, in_market, notional, np.empty((0, 6)), np.empty((0, 6))


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _one_symbol(
    open_, close, signal, size_frac, scalar_size, j, g, fee, slip, equity, trades, n_trades,
    cash_out, in_market_out, notional_out, pos_out, entry_price_out, entry_bar_out, entry_fee_out, last_out,
):  # fmt: skip  # pragma: no cover - compiled
    """Symbol ``j``'s whole history in portfolio ``g`` (it alone). ``open_``, ``close``, ``signal``,
    ``size_frac`` and ``equity`` are its columns (``size_frac[0]`` for every bar when
    ``scalar_size``); its signal exits go into ``trades`` from row ``n_trades`` (returns the new
    count), its state after the last bar into the ``*_out`` arrays."""
    n = close.shape[0]
    cash = cash_out[g]
    notional = 0.0
    in_market = 0
    pos = 0.0
    entry_price = 0.0
    entry_bar = 0
    entry_fee = 0.0
    last = np.nan
    pending = 0  # the order decided at the previous candle's close (kernel rule 6)
    pending_equity = 0.0
    pending_frac = 0.0
    for t in range(n):
        if pending != 0:  # 1-3. the open: the exit, then the entry
            o = open_[t]
            if np.isfinite(o):
                f = pending
                pending = 0
                if pos != 0.0 and (f & ((_XL | _ES) if pos > 0.0 else (_XS | _EL))) != 0:
                    px, qa, cash_change, exit_fee = _exit_cash(pos, o, slip, fee)
                    cash += cash_change
                    notional += qa * px
                    direction = 1.0 if pos > 0.0 else -1.0
                    n_trades = _record(
                        trades, n_trades, j, direction, entry_bar, t, qa, entry_price, px, entry_fee + exit_fee, SIGNAL
                    )
                    pos = 0.0
                want_long = (f & _EL) != 0
                if pos == 0.0 and want_long != ((f & _ES) != 0):
                    px = o * (1.0 + slip) if want_long else o * (1.0 - slip)
                    q = _entry_qty(pending_frac, pending_equity, cash, px, fee)
                    if q > 0.0:
                        cash_change, fee_paid = _entry_cash(want_long, q, px, fee)
                        cash += cash_change
                        pos = q if want_long else -q
                        notional += q * px
                        entry_price = px
                        entry_bar = t
                        entry_fee = fee_paid
        # 6. the close: mark to market, then the bar's signal becomes the next order
        c = close[t]
        if np.isfinite(c):
            last = c
        value = cash
        if pos != 0.0:
            value += pos * last
            in_market += 1
        equity[t] = value
        s = signal[t]
        if s != 0:
            pending = s
            pending_equity = value
            pending_frac = size_frac[0] if scalar_size else size_frac[t]
    cash_out[g] = cash
    in_market_out[g] = in_market
    notional_out[g] = notional
    pos_out[j] = pos
    entry_price_out[j] = entry_price
    entry_bar_out[j] = entry_bar
    entry_fee_out[j] = entry_fee
    last_out[j] = last
    return n_trades
