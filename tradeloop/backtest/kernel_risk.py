"""The risk engine inside the compiled backtest: what the live engine does at each bar's close.

``tradeloop.backtest.kernel.simulate`` runs :func:`risk_close` after marking equity (its rule
6) when given a ``RiskConfig`` (``None`` or ``bypass=True``: no risk pass, today's results bit
for bit). Per portfolio group (one with ``cash_sharing``, one per symbol without), on every
bar, in ``live.engine``'s order (mark, kill switch, decide, risk):

1. **Kill switch** (``tradeloop.risk.state``, rules 1-4): the group's equity at the close moves
   its UTC day (``ts // 86_400_000``), the day's start equity and the high-water mark, then may
   trip (``limits.kill_switch_rule``); the trip is recorded once (bar, rule, equity, reference,
   value, limit). Nobody acknowledges in a backtest: once tripped, the group's entries are
   refused (``kill_switch``) to the end. With ``flatten_on_kill`` the trip bar adds a
   reduce-only flatten of every open position (``|q| > 1e-12``, ``tradeloop.risk.checks.
   flatten_intents``) after the signals' own intents.
2. **Intents** (``live.signal_intents.intents``, with shorts and limit entries): a symbol's signal
   gives an exit of the whole position when it exits it (a long on ``EXIT_LONG`` or
   ``ENTER_SHORT``, a short on ``EXIT_SHORT`` or ``ENTER_LONG``), and an entry when exactly one
   entry flag is set and the position is flat or exiting, worth ``a = size_frac * equity at
   the close`` (none when ``a`` is not > 0), reference price the close: a market order for the
   quote amount ``a``, or with ``entry_order='limit'`` a limit order for ``a / price`` units at
   ``price = fills.limit_price_rule`` of the close.
3. **Pre-trade check** (``tradeloop.risk.checks``, rules 1-13, the arithmetic shared through
   ``tradeloop.risk.limits``): reductions first, then entries, each by symbol (the kernel's
   column order is the symbols' sorted order: ``InstrumentId``'s on one venue), a symbol's
   exit before its flatten. Each is judged against a running snapshot of the group at the
   close, which every approved intent moves by its quantity (a quote amount converted at its
   order price); equity does not move. Orders in the throttle's window are those approved at
   bars in ``(ts - throttle_window_ms, ts]`` plus those approved earlier in the batch.
   Market rules (optional, per symbol) are minimums only: ``min_amount`` and
   ``min_notional``; the backtest does not trade on a venue's grid.
4. **Orders.** What is approved goes to the next open as the kernel's flags: the exit (a
   flatten's exit is recorded with reason ``kill_switch``), the entry. A denial is recorded
   (bar, symbol, kind, rule, limit, value); a denied entry simply does not happen. An entry
   approved while its position's exit was denied cannot be placed (the kernel never adds to
   a held position) and is dropped at the open. Any signal still cancels the symbol's resting
   limit entry, as without risk; a trip cancels the group's resting limit entries (the kernel
   does it after this pass, as the live engine cancels its resting entry orders on a trip).
   An entry fill of at most ``FLAT_QTY`` units (the cash was spent by an earlier entry) is
   skipped: the risk engine counts such dust as flat and would deny its exit
   (``not_reducing``) bar after bar, leaving the symbol stuck.
"""

from __future__ import annotations

import numba as nb
import numpy as np
from numba.extending import register_jitable

from tradeloop.backtest import fills
from tradeloop.risk import DAY_MS, limits
from tradeloop.strategies.signals import ENTER_LONG, ENTER_SHORT, EXIT_LONG, EXIT_SHORT
from tradeloop.trading import OrderIntentKind

# flags the risk pass adds to a symbol's order for the next open, beside the signal codes 1, 2, 4 and 8
FLATTEN = 16  # the exit is the kill switch's flatten
SIGNALED = 32  # the bar had a signal: it cancels a resting limit entry, as a signal does without risk

# the risk parameters, a float vector (NaN: off)
(
    P_MAX_ORDER_NOTIONAL,
    P_MAX_POSITION_NOTIONAL,
    P_MAX_GROSS,
    P_MAX_NET,
    P_MAX_OPEN,
    P_MAX_ORDERS,
    P_WINDOW,
    P_PRICE_BAND,
    P_DAILY,
    P_DRAWDOWN,
    P_FLATTEN,
) = range(11)
N_PARAMS = 11
# kill-switch state columns (per group): UTC day (NaN: no equity seen yet), day's start equity, last equity, high-water
K_DAY, K_START, K_LAST, K_HWM = range(4)
# a trip's record (per group; bar -1: never tripped)
TR_BAR, TR_RULE, TR_EQUITY, TR_REFERENCE, TR_VALUE, TR_LIMIT = range(6)
# a denial's record
D_BAR, D_SYMBOL, D_KIND, D_RULE, D_LIMIT, D_VALUE = range(6)
KINDS = (
    OrderIntentKind.ENTER_LONG,
    OrderIntentKind.ENTER_SHORT,
    OrderIntentKind.EXIT_LONG,
    OrderIntentKind.EXIT_SHORT,
    OrderIntentKind.FLATTEN,
)
_K_ENTER_LONG, _K_ENTER_SHORT, _K_EXIT_LONG, _K_EXIT_SHORT, _K_FLATTEN = range(5)
_EL, _ES, _XL, _XS = ENTER_LONG, ENTER_SHORT, EXIT_LONG, EXIT_SHORT
_APPROVED, FLAT_QTY = limits.APPROVED, limits.FLAT_QTY
_FLAT = FLAT_QTY

# tradeloop.risk.limits compiled: the tolerance helpers become callable from compiled code, the rules are the
# very functions the Python check calls. numba's cache of the kernel sees kernel.py only: kernel.RISK_SHA256
# follows this file and limits.py (tests/backtest/test_kernel_risk.py says to set it anew).
for _helper in (limits.exceeds, limits.short_of, limits.reaches):
    register_jitable(inline="always")(_helper)
_jit = nb.njit(cache=True, inline="always", error_model="numpy")
_reduction_rule = _jit(limits.reduction_rule)
_throttle_rule = _jit(limits.throttle_rule)
_price_band_rule = _jit(limits.price_band_rule)
_market_rule = _jit(limits.market_rule)
_exposure_rule = _jit(limits.exposure_rule)
_kill_switch_rule = _jit(limits.kill_switch_rule)
_limit_price_rule = _jit(fills.limit_price_rule)


@_jit
def _positive(x):
    return x > 0.0 and np.isfinite(x)


@_jit
def _deny(denials, n, t, j, kind, code, limit, value):
    r = denials[n]
    r[D_BAR] = t
    r[D_SYMBOL] = j
    r[D_KIND] = kind
    r[D_RULE] = code
    r[D_LIMIT] = limit
    r[D_VALUE] = value
    return n + 1


@_jit
def _reduce(run_q, sign, qty, price, min_amount, min_notional):
    """Rules 1, 2 and 7 for a reduction of ``qty`` at reference ``price``."""
    if not (_positive(qty) and _positive(price)):
        return limits.INVALID, 0.0, qty
    code, limit, value = _reduction_rule(run_q, sign, qty)
    if code == _APPROVED and min_amount == min_amount:
        code, limit, value = _market_rule(qty, qty * price, True, min_amount, min_notional)
    return code, limit, value


@_jit
def _window_count(thr, thr_n, g, ts, window):
    """Orders recorded at bars in ``(ts - window, ts]`` (the ring holds the newest, in time order)."""
    cap = thr.shape[1]
    start = ts - window
    count = 0
    i = thr_n[g] - 1
    while i >= 0 and i >= thr_n[g] - cap:
        u = thr[g, i % cap]
        if u <= start:
            break
        if u <= ts:
            count += 1
        i -= 1
    return count


@_jit
def risk_state(n_groups, k, risk):
    """The risk pass's state: kill switch ``(groups, 4)``, trips ``(groups, 6)``, the throttle's
    ring of order times ``(groups, cap)`` and counts, the running positions, the flags, the denials."""
    params, max_denials = risk[1], risk[5]
    ks = np.full((n_groups, 4), np.nan)
    trips = np.full((n_groups, 6), np.nan)
    trips[:, TR_BAR] = -1.0
    cap = 1
    if params[P_MAX_ORDERS] == params[P_MAX_ORDERS]:  # the last max_orders suffice; never more than all orders
        cap = max(1, min(int(params[P_MAX_ORDERS]), max_denials))
    thr = np.zeros((n_groups, cap), dtype=np.int64)
    thr_n = np.zeros(n_groups, dtype=np.int64)
    return ks, trips, thr, thr_n, np.zeros(k), np.zeros(k, dtype=np.int8), np.empty((max_denials, 6))


@_jit
def risk_close(
    t, equity_row, pos, last, signal_row, size_frac, scalar_size, limit_mode, limit_offset, risk, state, n_denials
):
    """The risk pass at the close of bar ``t`` (module rules). ``risk`` is the kernel's risk tuple
    (``tradeloop.backtest.guard.RiskInputs.kernel_args``), ``state`` what :func:`risk_state` made; writes
    ``flags`` (what each symbol sends to its next open, 0: nothing) and returns ``(denials
    recorded so far, any flag set)``."""
    ts, params, market, members, gstart = risk[0][t], risk[1], risk[2], risk[3], risk[4]
    ks, trips, thr, thr_n, run_pos, flags, denials = state
    any_flag = False
    for g in range(gstart.shape[0] - 1):
        e = equity_row[g]
        # 1. the kill switch
        day = float(ts // DAY_MS)
        if ks[g, K_DAY] != ks[g, K_DAY]:
            ks[g, K_DAY] = day
            ks[g, K_START] = e
        elif day > ks[g, K_DAY]:
            ks[g, K_DAY] = day
            ks[g, K_START] = ks[g, K_LAST]
        ks[g, K_LAST] = e
        if not ks[g, K_HWM] >= e:
            ks[g, K_HWM] = e
        tripped_now = False
        if trips[g, TR_BAR] < 0.0:
            code, ref, value, limit = _kill_switch_rule(
                e, ks[g, K_START], ks[g, K_HWM], params[P_DAILY], params[P_DRAWDOWN]
            )
            if code != _APPROVED:
                r = trips[g]
                r[TR_BAR] = t
                r[TR_RULE] = code
                r[TR_EQUITY] = e
                r[TR_REFERENCE] = ref
                r[TR_VALUE] = value
                r[TR_LIMIT] = limit
                tripped_now = True
        flatten = tripped_now and params[P_FLATTEN] > 0.0
        busy = flatten
        for m in range(gstart[g], gstart[g + 1]):
            if signal_row[members[m]] != 0:
                busy = True
                break
        if not busy:
            continue
        any_flag = True
        approved = 0
        for m in range(gstart[g], gstart[g + 1]):
            j = members[m]
            run_pos[j] = pos[j]
            flags[j] = SIGNALED if signal_row[j] != 0 else 0
        # 3. reductions, by symbol: the signal's exit, then the flatten
        for m in range(gstart[g], gstart[g + 1]):
            j = members[m]
            s = signal_row[j]
            q = pos[j]
            exit_bit = _XL if q > 0.0 else _XS
            sign = -1.0 if q > 0.0 else 1.0
            if (q > 0.0 and (s & (_XL | _ES)) != 0) or (q < 0.0 and (s & (_XS | _EL)) != 0):
                kind = _K_EXIT_LONG if q > 0.0 else _K_EXIT_SHORT
                code, limit, value = _reduce(run_pos[j], sign, abs(q), last[j], market[j, 0], market[j, 1])
                if code == _APPROVED:
                    run_pos[j] += sign * abs(q)
                    approved += 1
                    flags[j] |= exit_bit
                else:
                    n_denials = _deny(denials, n_denials, t, j, kind, code, limit, value)
            if flatten and abs(q) > _FLAT:
                code, limit, value = _reduce(run_pos[j], sign, abs(q), last[j], market[j, 0], market[j, 1])
                if code == _APPROVED:
                    run_pos[j] += sign * abs(q)
                    approved += 1
                    flags[j] |= exit_bit | FLATTEN
                else:
                    n_denials = _deny(denials, n_denials, t, j, _K_FLATTEN, code, limit, value)
        # 3. entries, by symbol
        for m in range(gstart[g], gstart[g + 1]):
            j = members[m]
            s = signal_row[j]
            q = pos[j]
            want_long = (s & _EL) != 0 and (s & _ES) == 0
            want_short = (s & _ES) != 0 and (s & _EL) == 0
            exiting = (q > 0.0 and (s & (_XL | _ES)) != 0) or (q < 0.0 and (s & (_XS | _EL)) != 0)
            if not (want_long or want_short) or not (q == 0.0 or exiting):
                continue
            d = 1.0 if want_long else -1.0
            amount = (size_frac[0, 0] if scalar_size else size_frac[t, j]) * e
            if not amount > 0.0:  # no entry of size 0 (live.signal_intents.intents)
                continue
            ref = last[j]
            if limit_mode:  # units fixed at decision, valued at the limit price
                price = _limit_price_rule(d, ref, limit_offset)
                qty = amount / price
                notional = qty * price
                size = qty
            else:  # a quote amount, converted at the reference price
                price = ref
                qty = amount / price
                notional = amount
                size = amount
            code, limit, value = _APPROVED, 0.0, 0.0
            if not (_positive(size) and _positive(ref) and _positive(price)):  # 1
                code, limit, value = limits.INVALID, 0.0, size
            elif trips[g, TR_BAR] >= 0.0:  # 3
                code, limit, value = limits.KILL_SWITCH, trips[g, TR_LIMIT], trips[g, TR_VALUE]
            elif params[P_MAX_ORDERS] == params[P_MAX_ORDERS]:  # 4
                count = _window_count(thr, thr_n, g, ts, params[P_WINDOW]) + approved
                code, limit, value = _throttle_rule(float(count), params[P_MAX_ORDERS])
            if code == _APPROVED:  # 5 (no price) cannot happen: the close is the reference price
                code, limit, value = _price_band_rule(price, ref, params[P_PRICE_BAND])  # 6
            if code == _APPROVED and market[j, 0] == market[j, 0]:  # 7, 8
                code, limit, value = _market_rule(qty, notional, False, market[j, 0], market[j, 1])
            if code == _APPROVED:  # 9-13
                held_i = run_pos[j] * last[j] if abs(run_pos[j]) > _FLAT else 0.0
                others, held_sum, held_count = 0.0, 0.0, 0.0
                for mm in range(gstart[g], gstart[g + 1]):
                    jj = members[mm]
                    if abs(run_pos[jj]) > _FLAT:
                        n_jj = run_pos[jj] * last[jj]
                        held_sum += n_jj
                        held_count += 1.0
                        if jj != j:
                            others += abs(n_jj)
                code, limit, value = _exposure_rule(
                    d * notional,
                    held_i,
                    abs(run_pos[j]) <= _FLAT,
                    others,
                    held_sum,
                    held_count,
                    e,
                    params[P_MAX_ORDER_NOTIONAL],
                    params[P_MAX_POSITION_NOTIONAL],
                    params[P_MAX_OPEN],
                    params[P_MAX_GROSS],
                    params[P_MAX_NET],
                )
            if code != _APPROVED:
                kind = _K_ENTER_LONG if want_long else _K_ENTER_SHORT
                n_denials = _deny(denials, n_denials, t, j, kind, code, limit, value)
                continue
            run_pos[j] += d * qty
            approved += 1
            if q == 0.0 or (flags[j] & (_XL | _XS)) != 0:  # an entry behind a denied exit is dropped
                flags[j] |= _EL if want_long else _ES
        # the batch's orders join the throttle's memory
        if params[P_MAX_ORDERS] == params[P_MAX_ORDERS]:
            cap = thr.shape[1]
            for _ in range(approved):
                thr[g, thr_n[g] % cap] = ts
                thr_n[g] += 1
    return n_denials, any_flag
