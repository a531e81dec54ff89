"""The compiled simulation loop (numba). Pure arrays in, arrays out.

Rules, in the order they apply on each bar ``t``:

1. **Open.** Orders decided at the close of the symbol's previous bar fill at this bar's
   open. Within a bar, every exit of every symbol fills before any entry, so cash freed
   by an exit can fund an entry in the same portfolio. A symbol without a candle at ``t``
   (NaN open) keeps its order for its next candle. Entering the opposite side closes the
   current position first (a reversal); entering the side already held does nothing (no
   pyramiding). Exits are always market orders; entries too unless ``entry_order='limit'``
   (step 4).
2. **Sizing.** A new position is worth ``size_frac * equity at decision``, capped by the
   cash that pays for it and its fee (``cash / (price * (1 + fee))``): no leverage. Shorts
   use the same cap as collateral.
3. **Fills.** Buys fill at ``price * (1 + slippage)``, sells at ``price * (1 - slippage)``;
   the fee is ``fee_rate * notional`` on every fill.
4. **Limit entries** (``entry_order='limit'``). An entry decided at bar ``d``'s close is a
   limit order at ``close_d * (1 - limit_offset)`` (buy) or ``close_d * (1 + limit_offset)``
   (sell) for ``size_frac * equity_d / limit price`` units, fixed at decision. It is placed
   at the symbol's next candle, after that open's exits (held side already: dropped, as in
   step 1), and rests for ``limit_ttl_bars`` of the symbol's candles, that one included;
   then it expires. Queue rule (``fills.limit_fill_rule``): we are last in the queue, so a
   buy fills only when a bar's low trades strictly through the price (``low < price``;
   touching is not enough), at the price, or at the open if the open is already below it;
   a sell mirrors it (``high > price``). Limit fills pay no slippage and the maker fee
   (``maker_fee_rate``, default ``fee_rate``); the quantity is capped by the cash at the
   fill (``cash / (fill * (1 + maker fee))``), and with no cash the order lapses. Fills of
   one bar go in symbol order, after the open's market orders and before the stops. A new
   non-zero signal for the symbol cancels its resting order (an entry signal places a new
   one, as above); an order still resting after the last bar is dropped. On the bar a limit
   entry fills, its high (low, for a sell) is taken to have come before the fill: the
   take-profit is not checked on that bar and that high does not join the peak; the stop
   is (pessimistic).
5. **Stops, on the bar's high/low**, for positions open after steps 1 and 4
   (``fills.stop_rule`` and ``fills.stop_fill_rule``). Levels: stop-loss
   ``entry * (1 -/+ stop_loss)``, ATR stop ``entry -/+ atr_stop * ATR_d`` with ``ATR_d``
   the ATR at the close of the decision bar (fixed at entry), take-profit
   ``entry * (1 +/- take_profit)``, trailing ``peak * (1 -/+ trailing_stop)`` and ATR
   trailing ``peak -/+ atr_trailing * ATR_{t-1}`` (the ATR at the previous bar's close, so
   it moves with volatility), where the peak (trough for shorts) covers the entry price
   and the highs (lows) of *previous* bars: this bar's high updates it only after the
   check. ATR is Wilder's (``tradeloop.backtest.atr``); while it is NaN (warm-up) its stop
   is off. The tightest of stop-loss, ATR stop, trailing and ATR trailing is the stop (ties:
   that order); ATR stops exit as ``stop_loss`` and ``trailing_stop``. A level the open
   already passed fills at the open (a gap). When one bar touches both stop and
   take-profit, the **stop is assumed to have come first** (pessimistic), unless the open
   already passed the take-profit. Stop fills pay slippage and fees like any fill.
6. **Close.** Equity = cash + sum(position * last close); a missing close keeps the last
   known one. Then the bar's signal becomes the order for the next bar.
7. **End.** Positions still open after the last bar are marked at the last close without
   an exit fee and listed as open trades (``exit_reason = OPEN``); with ``close_at_end``
   they are instead closed at the last close with slippage and fee (``END``).
8. **Risk** (with a ``RiskConfig``; ``tradeloop.backtest.kernel_risk`` lists its rules). At
   step 6, after the marking, the risk engine runs as in the live engine: the kill switch on
   each portfolio's equity, then the bar's signals as order intents through the pre-trade
   checks; only what they approve becomes the next open's orders (a flatten on a trip exits
   with reason ``kill_switch``), and every denial and trip is recorded. A trip cancels the
   tripped portfolio's resting limit entries (step 4) at that close, as the live engine cancels
   its resting entry orders; its protective exits stay. An entry fill of at
   most ``1e-12`` units (the cash was spent) does not happen: the risk engine counts such a
   position as flat and would never let it be sold.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from tradeloop.backtest import fills, kernel_exits, kernel_risk
from tradeloop.backtest.fills import (
    END,
    EXIT_REASONS,
    KILL_SWITCH,
    OPEN,
    SIGNAL,
    STOP_LOSS,
    TAKE_PROFIT,
    TRAILING_STOP,
)
from tradeloop.backtest.kernel_exits import (  # noqa: F401 (the trade record columns, re-exported)
    N_TRADE_FIELDS,
    T_DIRECTION,
    T_ENTRY_BAR,
    T_ENTRY_PRICE,
    T_EXIT_BAR,
    T_EXIT_PRICE,
    T_FEES,
    T_PNL,
    T_QTY,
    T_REASON,
    T_RETURN,
    T_SYMBOL,
)
from tradeloop.strategies.signals import ENTER_LONG, ENTER_SHORT, EXIT_LONG, EXIT_SHORT

__all__ = [
    "END",
    "EXIT_REASONS",
    "KILL_SWITCH",
    "OPEN",
    "SIGNAL",
    "STOP_LOSS",
    "TAKE_PROFIT",
    "TRAILING_STOP",
    "simulate",
]

_EL, _ES, _XL, _XS = ENTER_LONG, ENTER_SHORT, EXIT_LONG, EXIT_SHORT

# the scalar rules of tradeloop.backtest.fills, compiled: the live paper broker calls the same functions.
# numba's cache keys on this file's content only, so this digest of fills.py is here to change with it: after
# editing fills.py, set it anew (tests/backtest/test_fills.py says to) and the kernel recompiles.
FILLS_SHA256 = "bcf22b41089bb4ee078a72311e5c1ac3b1b070c26769cef198265e640c7d11c7"
_jit = nb.njit(cache=True, inline="always", error_model="numpy")
_stop_rule = _jit(fills.stop_rule)
_target_rule = _jit(fills.target_rule)
_stop_fill_rule = _jit(fills.stop_fill_rule)
_limit_price_rule = _jit(fills.limit_price_rule)
_limit_fill_rule = _jit(fills.limit_fill_rule)
# the same for the risk pass: a digest of tradeloop/backtest/kernel_risk.py and tradeloop/risk/limits.py (whose
# functions it compiles), set anew after editing either (tests/backtest/test_kernel_risk.py says to).
RISK_SHA256 = "1809491d69bca6989f3fc0eb140e3dd1e914fac9a1646078824c347f4fa05de9"
_risk_close = kernel_risk.risk_close
_risk_state = kernel_risk.risk_state
_FL = kernel_risk.FLATTEN
_FLAT_QTY = kernel_risk.FLAT_QTY
# and for the exit fills and the trade records: a digest of tradeloop/backtest/kernel_exits.py, set anew after
# editing it (tests/backtest/test_fills.py says to).
EXITS_SHA256 = "808ffca408b6c5394790b6f2e479fa1b1058174528a84df0e9b4c5708ab7b18c"
_exit_fill = kernel_exits.exit_fill
_entry_qty = kernel_exits.entry_qty
_entry_cash = kernel_exits.entry_cash
_end_of_data = kernel_exits.end_of_data


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
    atr,
    atr_stop,
    atr_trailing,
    limit_ttl,
    limit_offset,
    maker_fee,
    risk,
):
    """Run the portfolio simulation. Disabled stops are NaN; ``limit_ttl = 0``: market entries.

    Arrays are (bars, symbols), C order or column slices of such arrays; ``size_frac`` is
    (bars, symbols) or (1, 1); ``atr`` is (bars, symbols), or (1, 1) and unread when both ATR
    stops are off; ``group[j]`` is symbol j's portfolio; ``equity`` is the (bars, groups)
    output, filled in place. ``risk`` is ``None`` (no risk pass: numba prunes it from this
    specialization) or, for rule 8, ``tradeloop.backtest.guard.RiskInputs.kernel_args``. Returns
    ``(equity[bars, groups], trades[n, 11], cash[groups], bars_in_market[groups],
    traded_notional[groups], denials[d, 6], trips[groups, 6])`` (risk off: no rows of either).
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
    use_atr = atr_stop == atr_stop or atr_trailing == atr_trailing
    has_stops = stop_loss == stop_loss or take_profit == take_profit or trailing == trailing or use_atr
    entry_atr = np.full(k, np.nan)  # ATR at the bar that decided the position
    pending_atr = np.full(k, np.nan)
    pending_close = np.zeros(k)  # the decision bar's close: a limit entry's reference price
    limit_mode = limit_ttl > 0
    rest_left = np.zeros(k, dtype=np.int64)  # candles a resting limit entry still lives (0: none)
    rest_dir = np.zeros(k)
    rest_price = np.zeros(k)
    rest_qty = np.zeros(k)
    rest_atr = np.zeros(k)
    limit_bar = np.full(k, -1, dtype=np.int64)  # bar of the position's limit entry fill
    n_resting = 0
    n_denials = 0
    denials = np.empty((0, 6))
    trips = np.empty((0, 6))
    if risk is not None:
        state = _risk_state(n_groups, k, risk)
        trips, flags, denials = state[1], state[5], state[6]

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
            if (f & ((_XL | _ES) if q > 0.0 else (_XS | _EL))) == 0:  # not an exit of the side held
                continue
            why = SIGNAL
            if risk is not None:
                if (f & _FL) != 0:
                    why = KILL_SWITCH
            n_trades = _exit_fill(
                trades, n_trades, pos, entry_price, entry_bar, entry_fee, cash, notional, group[j], j, t, o, slip, fee,
                why,
            )  # fmt: skip
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
            if rest_left[j] > 0:  # a new signal cancels the resting limit entry
                rest_left[j] = 0
                n_resting -= 1
            want_long = (f & _EL) != 0
            want_short = (f & _ES) != 0
            if pos[j] != 0.0 or want_long == want_short:
                continue
            if limit_mode:  # 4. the entry rests as a limit order from this candle on
                d = 1.0 if want_long else -1.0
                lp = _limit_price_rule(d, pending_close[j], limit_offset)
                rest_dir[j] = d
                rest_price[j] = lp
                rest_qty[j] = pending_frac[j] * pending_equity[j] / lp
                rest_atr[j] = pending_atr[j]
                rest_left[j] = limit_ttl
                n_resting += 1
                continue
            g = group[j]
            px = o * (1.0 + slip) if want_long else o * (1.0 - slip)
            q = _entry_qty(pending_frac[j], pending_equity[j], cash[g], px, fee)
            if not q > 0.0:
                continue
            if risk is not None:
                if not q > _FLAT_QTY:  # flat to the risk engine: no dust position (rule 8)
                    continue
            cash_change, fee_paid = _entry_cash(want_long, q, px, fee)
            cash[g] += cash_change
            pos[j] = q if want_long else -q
            notional[g] += q * px
            entry_price[j] = px
            entry_bar[j] = t
            entry_fee[j] = fee_paid
            extreme[j] = px
            entry_atr[j] = pending_atr[j]
        # 4. resting limit entries on the bar's range
        for j in range(k if n_resting > 0 else 0):
            if rest_left[j] == 0 or not np.isfinite(open_[t, j]):
                continue
            d = rest_dir[j]
            fill = _limit_fill_rule(d, rest_price[j], open_[t, j], high[t, j], low[t, j])
            if fill != fill:
                rest_left[j] -= 1
                if rest_left[j] == 0:
                    n_resting -= 1
                continue
            rest_left[j] = 0
            n_resting -= 1
            g = group[j]
            q = min(rest_qty[j], cash[g] / (fill * (1.0 + maker_fee)))
            if not q > 0.0:
                continue
            if risk is not None:
                if not q > _FLAT_QTY:  # flat to the risk engine: no dust position (rule 8)
                    continue
            cash_change, fee_paid = _entry_cash(d > 0.0, q, fill, maker_fee)
            cash[g] += cash_change
            pos[j] = q if d > 0.0 else -q
            notional[g] += q * fill
            entry_price[j] = fill
            entry_bar[j] = t
            entry_fee[j] = fee_paid
            extreme[j] = fill
            entry_atr[j] = rest_atr[j]
            limit_bar[j] = t
        # 5. stops on the bar's range
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
            d = 1.0 if q > 0.0 else -1.0
            prev_atr = atr[t - 1, j] if use_atr and t > 0 else np.nan
            stop, reason = _stop_rule(
                d, ep, extreme[j], entry_atr[j], prev_atr, stop_loss, trailing, atr_stop, atr_trailing
            )
            fresh_limit = limit_bar[j] == t
            if fresh_limit:  # the bar's far side came before the fill: no take-profit on it
                target = np.inf if q > 0.0 else -np.inf
            else:
                target = _target_rule(d, ep, take_profit)
            fill, reason = _stop_fill_rule(d, stop, reason, target, o, h, lo)
            if fill == fill:
                n_trades = _exit_fill(
                    trades, n_trades, pos, entry_price, entry_bar, entry_fee, cash, notional, g, j, t, fill, slip,
                    fee, reason,
                )  # fmt: skip
            elif not fresh_limit:  # this bar's high (low) joins the peak (trough) after the check
                if q > 0.0:
                    if h > extreme[j]:
                        extreme[j] = h
                elif lo < extreme[j]:
                    extreme[j] = lo
        # 6. close: mark to market, then the bar's signal becomes the next order
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
        if risk is not None:  # 8. the risk engine decides what goes to the next open
            n_denials, row_has_signal = _risk_close(
                t,
                equity[t],
                pos,
                last,
                signal[t],
                size_frac,
                scalar_size,
                limit_mode,
                limit_offset,
                risk,
                state,
                n_denials,
            )
            for j in range(k if n_resting > 0 else 0):  # a trip cancels its group's resting limit entries
                if rest_left[j] > 0 and trips[group[j], 0] == t:
                    rest_left[j] = 0
                    n_resting -= 1
        if row_has_signal:
            for j in range(k):
                s = signal[t, j]
                if risk is not None:
                    s = flags[j]
                    flags[j] = 0
                if s != 0:
                    if pending[j] == 0:
                        n_pending += 1
                    pending[j] = s
                    pending_equity[j] = equity[t, group[j]]
                    pending_frac[j] = size_frac[0, 0] if scalar_size else size_frac[t, j]
                    pending_close[j] = last[j]
                    pending_atr[j] = atr[t, j] if use_atr else np.nan
    # 7. end of data
    n_trades = _end_of_data(
        trades, n_trades, pos, entry_price, entry_bar, entry_fee, equity, cash, notional, group, last, slip, fee,
        close_at_end,
    )  # fmt: skip
    return equity, trades[:n_trades], cash, in_market, notional, denials[:n_denials], trips
