"""The compiled simulation loop (numba). Pure arrays in, arrays out.

Rules, in the order they apply on each bar ``t``:

1. **Open.** Orders decided at the close of the symbol's previous bar fill at this bar's
   open. Within a bar, every exit of every symbol fills before any entry, so cash freed
   by an exit can fund an entry in the same portfolio. A symbol without a candle at ``t``
   (NaN open) keeps its order for its next candle. Entering the opposite side closes the
   current position first (a reversal); entering the side already held does nothing (no
   pyramiding).
2. **Sizing.** A new position is worth ``size_frac * equity at decision``, capped by the
   cash that pays for it and its fee (``cash / (price * (1 + fee))``): no leverage. Shorts
   use the same cap as collateral.
3. **Fills.** Buys fill at ``price * (1 + slippage)``, sells at ``price * (1 - slippage)``;
   the fee is ``fee_rate * notional`` on every fill.
4. **Stops, on the bar's high/low**, for positions open after step 1. Levels: stop-loss
   ``entry * (1 -/+ stop_loss)``, take-profit ``entry * (1 +/- take_profit)``, trailing
   ``peak * (1 -/+ trailing_stop)`` where the peak (trough for shorts) covers the entry
   price and the highs (lows) of *previous* bars: this bar's high updates it only after the
   check. The tighter of stop-loss and trailing is the stop. A level the open already
   passed fills at the open (a gap). When one bar touches both stop and take-profit, the
   **stop is assumed to have come first** (pessimistic), unless the open already passed the
   take-profit. Stop fills pay slippage and fees like any fill.
5. **Close.** Equity = cash + sum(position * last close); a missing close keeps the last
   known one. Then the bar's signal becomes the order for the next bar.
6. **End.** Positions still open after the last bar are marked at the last close without
   an exit fee and listed as open trades (``exit_reason = OPEN``); with ``close_at_end``
   they are instead closed at the last close with slippage and fee (``END``).
"""

from __future__ import annotations

import numba as nb
import numpy as np

from tradeloop.strategies.signals import ENTER_LONG, ENTER_SHORT, EXIT_LONG, EXIT_SHORT

# exit reasons
SIGNAL, STOP_LOSS, TAKE_PROFIT, TRAILING_STOP, END, OPEN = 0, 1, 2, 3, 4, 5
EXIT_REASONS = ("signal", "stop_loss", "take_profit", "trailing_stop", "end", "open")

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

_EL, _ES, _XL, _XS = ENTER_LONG, ENTER_SHORT, EXIT_LONG, EXIT_SHORT


@nb.njit(cache=True, inline="always", error_model="numpy")
def _record(trades, n_trades, j, direction, entry_bar, exit_bar, qty, entry_price, exit_price, fees, reason):
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


@nb.njit(cache=True, nogil=True, error_model="numpy")
def simulate(
    open_,
    high,
    low,
    close,
    signal,
    size_frac,
    group,
    n_groups,
    init_cash,
    fee,
    slip,
    stop_loss,
    take_profit,
    trailing,
    close_at_end,
    max_trades,
    equity,
):
    """Run the portfolio simulation. Disabled stops are NaN.

    Arrays are (bars, symbols), C order or column slices of such arrays; ``size_frac`` is
    (bars, symbols) or (1, 1); ``group[j]`` is symbol j's portfolio; ``equity`` is the
    (bars, groups) output, filled in place. Returns
    ``(equity[bars, groups], trades[n, 11], cash[groups], bars_in_market[groups],
    traded_notional[groups])``.
    """
    n, k = close.shape
    scalar_size = size_frac.shape[0] == 1 and size_frac.shape[1] == 1
    cash = np.full(n_groups, init_cash)
    in_market = np.zeros(n_groups, dtype=np.int64)
    notional = np.zeros(n_groups)
    trades = np.empty((max_trades, N_TRADE_FIELDS))
    n_trades = 0

    pos = np.zeros(k)  # signed quantity
    entry_price = np.zeros(k)
    entry_bar = np.zeros(k, dtype=np.int64)
    entry_fee = np.zeros(k)
    extreme = np.zeros(k)  # peak for longs, trough for shorts
    last = np.full(k, np.nan)
    pending = np.zeros(k, dtype=np.int8)
    pending_equity = np.zeros(k)
    pending_frac = np.zeros(k)
    marked_at = np.full(n_groups, -1, dtype=np.int64)  # last bar a group counted as in market
    n_pending = 0  # orders waiting for an open: the open passes run only when there are some
    has_stops = stop_loss == stop_loss or take_profit == take_profit or trailing == trailing

    for t in range(n):
        # 1. exits at the open
        for j in range(k if n_pending > 0 else 0):
            f = pending[j]
            if f == 0 or pos[j] == 0.0:
                continue
            o = open_[t, j]
            if not np.isfinite(o):
                continue
            q = pos[j]
            if q > 0.0 and (f & (_XL | _ES)) != 0:
                px = o * (1.0 - slip)
                g = group[j]
                cash[g] += q * px * (1.0 - fee)
                notional[g] += q * px
                n_trades = _record(
                    trades,
                    n_trades,
                    j,
                    1.0,
                    entry_bar[j],
                    t,
                    q,
                    entry_price[j],
                    px,
                    entry_fee[j] + q * px * fee,
                    SIGNAL,
                )
                pos[j] = 0.0
            elif q < 0.0 and (f & (_XS | _EL)) != 0:
                px = o * (1.0 + slip)
                g = group[j]
                cash[g] -= -q * px * (1.0 + fee)
                notional[g] += -q * px
                n_trades = _record(
                    trades,
                    n_trades,
                    j,
                    -1.0,
                    entry_bar[j],
                    t,
                    -q,
                    entry_price[j],
                    px,
                    entry_fee[j] - q * px * fee,
                    SIGNAL,
                )
                pos[j] = 0.0
        # 1-3. entries at the open
        for j in range(k if n_pending > 0 else 0):
            f = pending[j]
            if f == 0:
                continue
            o = open_[t, j]
            if not np.isfinite(o):
                continue
            pending[j] = 0
            n_pending -= 1
            want_long = (f & _EL) != 0
            want_short = (f & _ES) != 0
            if pos[j] != 0.0 or want_long == want_short:
                continue
            g = group[j]
            px = o * (1.0 + slip) if want_long else o * (1.0 - slip)
            q = min(pending_frac[j] * pending_equity[j] / px, cash[g] / (px * (1.0 + fee)))
            if not q > 0.0:
                continue
            fee_paid = q * px * fee
            if want_long:
                cash[g] -= q * px + fee_paid
                pos[j] = q
            else:
                cash[g] += q * px - fee_paid
                pos[j] = -q
            notional[g] += q * px
            entry_price[j] = px
            entry_bar[j] = t
            entry_fee[j] = fee_paid
            extreme[j] = px
        # 4. stops on the bar's range
        for j in range(k if has_stops else 0):
            q = pos[j]
            if q == 0.0:
                continue
            o = open_[t, j]
            h = high[t, j]
            lo = low[t, j]
            if not (np.isfinite(h) and np.isfinite(lo)):
                continue
            ep = entry_price[j]
            g = group[j]
            if q > 0.0:
                stop = -np.inf
                reason = STOP_LOSS
                if stop_loss == stop_loss:
                    stop = ep * (1.0 - stop_loss)
                if trailing == trailing:
                    trail = extreme[j] * (1.0 - trailing)
                    if trail > stop:
                        stop = trail
                        reason = TRAILING_STOP
                target = ep * (1.0 + take_profit) if take_profit == take_profit else np.inf
                fill = np.nan
                if o >= target:
                    fill, reason = o, TAKE_PROFIT
                elif lo <= stop:
                    fill = o if o <= stop else stop
                elif h >= target:
                    fill, reason = target, TAKE_PROFIT
                if fill == fill:
                    px = fill * (1.0 - slip)
                    cash[g] += q * px * (1.0 - fee)
                    notional[g] += q * px
                    n_trades = _record(
                        trades, n_trades, j, 1.0, entry_bar[j], t, q, ep, px, entry_fee[j] + q * px * fee, reason
                    )
                    pos[j] = 0.0
                elif h > extreme[j]:
                    extreme[j] = h
            else:
                qa = -q
                stop = np.inf
                reason = STOP_LOSS
                if stop_loss == stop_loss:
                    stop = ep * (1.0 + stop_loss)
                if trailing == trailing:
                    trail = extreme[j] * (1.0 + trailing)
                    if trail < stop:
                        stop = trail
                        reason = TRAILING_STOP
                target = ep * (1.0 - take_profit) if take_profit == take_profit else -np.inf
                fill = np.nan
                if o <= target:
                    fill, reason = o, TAKE_PROFIT
                elif h >= stop:
                    fill = o if o >= stop else stop
                elif lo <= target:
                    fill, reason = target, TAKE_PROFIT
                if fill == fill:
                    px = fill * (1.0 + slip)
                    cash[g] -= qa * px * (1.0 + fee)
                    notional[g] += qa * px
                    n_trades = _record(
                        trades, n_trades, j, -1.0, entry_bar[j], t, qa, ep, px, entry_fee[j] + qa * px * fee, reason
                    )
                    pos[j] = 0.0
                elif lo < extreme[j]:
                    extreme[j] = lo
        # 5. close: mark to market, then the bar's signal becomes the next order
        for g in range(n_groups):
            equity[t, g] = cash[g]
        row_has_signal = False
        for j in range(k):
            c = close[t, j]
            if np.isfinite(c):
                last[j] = c
            if pos[j] != 0.0:
                g = group[j]
                equity[t, g] += pos[j] * last[j]
                if marked_at[g] != t:
                    marked_at[g] = t
                    in_market[g] += 1
            if signal[t, j] != 0:
                row_has_signal = True
        if row_has_signal:
            for j in range(k):
                s = signal[t, j]
                if s != 0:
                    if pending[j] == 0:
                        n_pending += 1
                    pending[j] = s
                    pending_equity[j] = equity[t, group[j]]
                    pending_frac[j] = size_frac[0, 0] if scalar_size else size_frac[t, j]
    # 6. end of data
    for j in range(k):
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
            n_trades = _record(
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
            n_trades = _record(
                trades, n_trades, j, direction, entry_bar[j], n - 1, qa, entry_price[j], px, entry_fee[j], OPEN
            )
    if close_at_end and n > 0:
        for g in range(n_groups):
            equity[n - 1, g] = cash[g]
    return equity, trades[:n_trades], cash, in_market, notional
