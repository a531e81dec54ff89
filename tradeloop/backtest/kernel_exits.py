"""Fills inside the compiled backtest: the cash each one moves, and the trade record an exit leaves.

``tradeloop.backtest.kernel.simulate`` and its plain-case twin
``tradeloop.backtest.kernel_plain.simulate_plain`` call these (inlined): :func:`entry_qty` and
:func:`entry_cash` where a position opens, the others where one ends: an exit at the open (the
kernel's rule 1), a stop or take-profit (rule 5), the end of data (rule 7). They move the
portfolio's ``cash`` and traded ``notional``, flatten ``pos`` (signed quantities over the
symbols) and write one row of the kernel's float64 trade matrix, the columns ``T_*``:

- A market entry buys (sells short) ``min(fraction * equity / price, cash / (price * (1 + fee)))``
  units (:func:`entry_qty`); a buy pays the notional and the fee ``fee_rate * notional``, a
  short sale receives the notional less the fee (:func:`entry_cash`).
- An exit fill (:func:`exit_fill`, its amounts :func:`exit_cash`) sells a long at
  ``price * (1 - slippage)`` and buys back a short at ``price * (1 + slippage)``; the cash moves
  by the fill's notional less (long) or plus (short) the fee ``fee_rate * notional``, and the
  notional counts as traded.
- ``T_FEES`` is the entry's and the exit's fee together,
  ``T_PNL = direction * qty * (exit_price - entry_price) - fees``,
  ``T_RETURN = T_PNL / (qty * entry_price)``.
- At the end (:func:`end_of_data`) an open position is marked at the last close without an
  exit fee and recorded with reason ``OPEN``; with ``close_at_end`` it is closed at the last
  close with slippage and fee (``END``) and the last bar's equity becomes the cash.

numba's cache of a kernel keys on its own file only: ``kernel.EXITS_SHA256`` and
``kernel_plain.EXITS_SHA256`` are this file's digest, set anew after editing it
(tests/backtest/test_fills.py says to), so both kernels recompile. Arrays go in one by one:
numba (0.68) inlining a function that wrote through a tuple of arrays into the kernel's risk
specialization left its writes unseen.
"""

from __future__ import annotations

import numba as nb

from tradeloop.backtest.fills import END, OPEN

# trade record columns (float64 matrix)
(
    T_SYMBOL,
    T_DIRECTION,
    T_ENTRY_BAR,
    T_EXIT_BAR,
    T_QTY,
    T_ENTRY_PRICE,
    T_EXIT_PRICE,
    T_FEES,
    T_PNL,
    T_RETURN,
    T_REASON,
) = range(11)
N_TRADE_FIELDS = 11


@nb.njit(cache=True, inline="always", error_model="numpy")
def record(trades, n_trades, j, direction, entry_bar, exit_bar, qty, entry_price, exit_price, fees, reason):
    """Write one trade of symbol ``j`` as row ``n_trades`` of ``trades``; returns the new count."""
    pnl = direction * qty * (exit_price - entry_price) - fees
    r = trades[n_trades]
    r[T_SYMBOL] = j
    r[T_DIRECTION] = direction
    r[T_ENTRY_BAR] = entry_bar
    r[T_EXIT_BAR] = exit_bar
    r[T_QTY] = qty
    r[T_ENTRY_PRICE] = entry_price
    r[T_EXIT_PRICE] = exit_price
    r[T_FEES] = fees
    r[T_PNL] = pnl
    r[T_RETURN] = pnl / (qty * entry_price)
    r[T_REASON] = reason
    return n_trades + 1


@nb.njit(cache=True, inline="always", error_model="numpy")
def entry_qty(frac, equity, cash, px, fee):
    """Units of a market entry at ``px`` (slippage in): ``frac`` of ``equity``, capped by the ``cash``
    that pays for them and their fee; not > 0: no entry."""
    return min(frac * equity / px, cash / (px * (1.0 + fee)))


@nb.njit(cache=True, inline="always", error_model="numpy")
def entry_cash(long, q, px, fee):
    """``(cash change, fee)`` of an entry of ``q > 0`` units at ``px``: a buy (``long``) pays the
    notional and the fee, a short sale receives the notional less the fee."""
    fee_paid = q * px * fee
    return (-(q * px + fee_paid) if long else q * px - fee_paid), fee_paid


@nb.njit(cache=True, inline="always", error_model="numpy")
def exit_cash(q, price, slip, fee):
    """``(fill price, units, cash change, fee)`` of closing the signed quantity ``q`` (not 0) at
    ``price`` before slippage."""
    if q > 0.0:
        px = price * (1.0 - slip)
        return px, q, q * px * (1.0 - fee), q * px * fee
    qa = -q
    px = price * (1.0 + slip)
    return px, qa, -(qa * px * (1.0 + fee)), qa * px * fee


@nb.njit(cache=True, inline="always", error_model="numpy")
def exit_fill(
    trades, n_trades, pos, entry_price, entry_bar, entry_fee, cash, notional, g, j, t, price, slip, fee, reason
):
    """Close symbol ``j``'s position (not flat) in portfolio ``g`` at ``price`` (before slippage) on
    bar ``t`` and record it with ``reason``; returns the new trade count."""
    q = pos[j]
    pos[j] = 0.0
    px, qa, cash_change, exit_fee = exit_cash(q, price, slip, fee)
    cash[g] += cash_change
    notional[g] += qa * px
    direction = 1.0 if q > 0.0 else -1.0
    return record(
        trades, n_trades, j, direction, entry_bar[j], t, qa, entry_price[j], px, entry_fee[j] + exit_fee, reason
    )


@nb.njit(cache=True, inline="always", error_model="numpy")
def end_of_data(
    trades,
    n_trades,
    pos,
    entry_price,
    entry_bar,
    entry_fee,
    equity,
    cash,
    notional,
    group,
    last,
    slip,
    fee,
    close_at_end,
):
    """Record the positions open after the last bar at ``last`` (``OPEN``), or close them there
    (``END``, ``close_at_end``: then the last row of ``equity`` is the cash); returns the new trade count."""
    n = equity.shape[0]
    for j in range(pos.shape[0]):
        q = pos[j]
        if q == 0.0:
            continue
        g = group[j]
        direction = 1.0 if q > 0.0 else -1.0
        qa = abs(q)
        px = last[j]
        if close_at_end:
            px = px * (1.0 - slip) if q > 0.0 else px * (1.0 + slip)
            exit_fee = qa * px * fee
            cash[g] += q * px - exit_fee
            notional[g] += qa * px
            n_trades = record(
                trades,
                n_trades,
                j,
                direction,
                entry_bar[j],
                n - 1,
                qa,
                entry_price[j],
                px,
                entry_fee[j] + exit_fee,
                END,
            )
            pos[j] = 0.0
        else:
            n_trades = record(
                trades, n_trades, j, direction, entry_bar[j], n - 1, qa, entry_price[j], px, entry_fee[j], OPEN
            )
    if close_at_end and n > 0:
        for g in range(cash.shape[0]):
            equity[n - 1, g] = cash[g]
    return n_trades
