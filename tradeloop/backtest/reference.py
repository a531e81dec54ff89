"""Plain numpy/Python references of the backtest, for cross-checking the compiled kernel.

Deliberately simple and slow, and sharing no code with the kernel or
``tradeloop.backtest.fills``/``atr``, so agreement between them is evidence:

- ``sma_cross_reference``: one symbol, long only, next-open fills, a fee per side,
  full-equity sizing, no slippage or stops, open position marked at the last close.
- ``single_symbol_reference``: one gapless symbol, any signal, long and short, slippage,
  fraction sizing, percent and ATR stops, take-profit, market or limit entries (the
  kernel's docstring, rules 1-7, re-read and written out bar by bar).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from tradeloop.strategies.signals import ENTER_LONG, ENTER_SHORT, EXIT_LONG, EXIT_SHORT


def sma_numpy(values: np.ndarray, n: int) -> np.ndarray:
    out = np.full(values.shape, np.nan)
    if values.size >= n:
        csum = np.cumsum(np.insert(values, 0, 0.0))
        out[n - 1 :] = (csum[n:] - csum[:-n]) / n
    return out


def sma_cross_reference(
    open_: np.ndarray,
    close: np.ndarray,
    *,
    fast: int = 10,
    slow: int = 30,
    fee: float = 0.001,
    init_cash: float = 10_000.0,
    tolerance: float = 1e-12,
) -> tuple[int, float]:
    """Return (number of trades incl. an open one, final equity)."""
    f = sma_numpy(close, fast)
    s = sma_numpy(close, slow)
    cash, qty = init_cash, 0.0
    side = 0  # last strict side of fast vs slow: +1 above, -1 below, 0 unknown
    pending = 0  # +1 buy at next open, -1 sell at next open
    trades = 0
    for t in range(close.size):
        if pending == 1 and qty == 0.0:
            price = open_[t]
            qty = min(cash / price, cash / (price * (1.0 + fee)))
            cash -= qty * price + qty * price * fee
            trades += 1
        elif pending == -1 and qty > 0.0:
            cash += qty * open_[t] * (1.0 - fee)
            qty = 0.0
        pending = 0
        if np.isnan(s[t]):
            continue
        score = f[t] / s[t] - 1.0
        now = 1 if score > tolerance else (-1 if score < -tolerance else 0)
        if now != 0:
            if now == 1 and side == -1:
                pending = 1
            elif now == -1 and side == 1:
                pending = -1
            side = now
    return trades, cash + qty * close[-1]


# ----------------------------------------------------------------------------- stops and limit entries
@dataclass(frozen=True, kw_only=True, slots=True)
class RefTrade:
    """One round trip of :func:`single_symbol_reference` (``reason`` as in the ledger)."""

    side: str  # "long" | "short"
    entry_bar: int
    exit_bar: int
    qty: float
    entry_price: float
    exit_price: float
    fees: float
    reason: str


def atr_reference(high: np.ndarray, low: np.ndarray, close: np.ndarray, window: int) -> np.ndarray:
    """Wilder's ATR of one gapless series, written out from the textbook definition."""
    trs = [math.nan] + [
        max(high[i] - low[i], abs(high[i] - close[i - 1]), abs(low[i] - close[i - 1])) for i in range(1, len(close))
    ]
    out = [math.nan] * len(close)
    if len(close) > window:
        seed = 0.0
        for tr in trs[1 : window + 1]:
            seed += tr
        out[window] = seed / window
        for i in range(window + 1, len(close)):
            out[i] = (out[i - 1] * (window - 1) + trs[i]) / window
    return np.array(out)


def single_symbol_reference(
    open_: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    signal: np.ndarray,
    *,
    init_cash: float = 10_000.0,
    fee: float = 0.001,
    slippage: float = 0.0,
    fraction: float = 1.0,
    stop_loss: float | None = None,
    take_profit: float | None = None,
    trailing_stop: float | None = None,
    atr_stop: float | None = None,
    atr_trailing: float | None = None,
    atr_window: int = 14,
    limit_offset: float | None = None,
    limit_ttl: int = 1,
    maker_fee: float | None = None,
    close_at_end: bool = False,
) -> tuple[list[RefTrade], np.ndarray]:
    """The kernel's documented rules for one gapless symbol, long and short, one bar at a time.

    ``limit_offset=None``: market entries; else limit entries at that offset. Returns the
    round trips (an open one last, reason ``open``) and the equity at each close.
    """
    n = len(close)
    atr = atr_reference(high, low, close, atr_window) if atr_stop or atr_trailing else np.full(n, math.nan)
    maker = fee if maker_fee is None else maker_fee
    cash = init_cash
    side = 0  # +1 long, -1 short, 0 flat
    qty = entry = entry_fee = peak = entry_atr = 0.0
    entry_bar = 0
    order: tuple[int, float, float, float] | None = None  # flags, equity, close, atr at the decision
    resting: list | None = None  # [side, price, qty, candles left, atr at the decision]
    trades: list[RefTrade] = []
    equity = np.empty(n)

    def leave(t: int, price: float, reason: str, exit_fee_rate: float) -> None:
        nonlocal cash, side, qty
        if side > 0:
            cash += qty * price - qty * price * exit_fee_rate
        else:
            cash -= qty * price + qty * price * exit_fee_rate
        total_fee = entry_fee + qty * price * exit_fee_rate
        trades.append(
            RefTrade(
                side="long" if side > 0 else "short",
                entry_bar=entry_bar,
                exit_bar=t,
                qty=qty,
                entry_price=entry,
                exit_price=price,
                fees=total_fee,
                reason=reason,
            )
        )
        side, qty = 0, 0.0

    def enter(t: int, direction: int, units: float, price: float, fee_rate: float, atr_d: float) -> None:
        nonlocal cash, side, qty, entry, entry_fee, peak, entry_atr, entry_bar
        side, qty, entry, peak, entry_atr, entry_bar = direction, units, price, price, atr_d, t
        entry_fee = units * price * fee_rate
        cash += -direction * units * price - entry_fee

    for t in range(n):
        o, h, lo, c = open_[t], high[t], low[t], close[t]
        limit_filled_now = False
        if order is not None:
            flags, eq_d, close_d, atr_d = order
            order = None
            resting = None  # a new signal cancels a resting entry
            if side > 0 and flags & (EXIT_LONG | ENTER_SHORT):
                leave(t, o * (1.0 - slippage), "signal", fee)
            elif side < 0 and flags & (EXIT_SHORT | ENTER_LONG):
                leave(t, o * (1.0 + slippage), "signal", fee)
            wants = [d for d, bit in ((1, ENTER_LONG), (-1, ENTER_SHORT)) if flags & bit]
            if side == 0 and len(wants) == 1:
                d = wants[0]
                if limit_offset is None:
                    px = o * (1.0 + d * slippage)
                    units = min(fraction * eq_d / px, cash / (px * (1.0 + fee)))
                    if units > 0.0:
                        enter(t, d, units, px, fee, atr_d)
                else:
                    price = close_d * (1.0 - d * limit_offset)
                    resting = [d, price, fraction * eq_d / price, limit_ttl, atr_d]
        if resting is not None:
            d, price, units, left, atr_d = resting
            traded_through = lo < price if d > 0 else h > price
            if traded_through:
                resting = None
                fill = min(o, price) if d > 0 else max(o, price)
                units = min(units, cash / (fill * (1.0 + maker)))
                if units > 0.0:
                    enter(t, d, units, fill, maker, atr_d)
                    limit_filled_now = True
            elif left == 1:
                resting = None
            else:
                resting[3] = left - 1
        if side != 0:
            prev_atr = atr[t - 1] if t > 0 else math.nan
            # candidates in the documented tie order; a later one must be strictly tighter
            candidates = []
            if stop_loss is not None:
                candidates.append((entry * (1.0 - side * stop_loss), "stop_loss"))
            if atr_stop is not None and not math.isnan(entry_atr):
                candidates.append((entry - side * atr_stop * entry_atr, "stop_loss"))
            if trailing_stop is not None:
                candidates.append((peak * (1.0 - side * trailing_stop), "trailing_stop"))
            if atr_trailing is not None and not math.isnan(prev_atr):
                candidates.append((peak - side * atr_trailing * prev_atr, "trailing_stop"))
            stop = None
            for level, why in candidates:
                if stop is None or side * (level - stop[0]) > 0.0:
                    stop = (level, why)
            target = None
            if take_profit is not None and not limit_filled_now:
                target = entry * (1.0 + side * take_profit)
            hit: tuple[float, str] | None = None
            if side > 0:
                if target is not None and o >= target:
                    hit = (o, "take_profit")
                elif stop is not None and lo <= stop[0]:
                    hit = (min(o, stop[0]), stop[1])
                elif target is not None and h >= target:
                    hit = (target, "take_profit")
            else:
                if target is not None and o <= target:
                    hit = (o, "take_profit")
                elif stop is not None and h >= stop[0]:
                    hit = (max(o, stop[0]), stop[1])
                elif target is not None and lo <= target:
                    hit = (target, "take_profit")
            if hit is not None:
                leave(t, hit[0] * (1.0 - side * slippage), hit[1], fee)
            elif not limit_filled_now:
                peak = max(peak, h) if side > 0 else min(peak, lo)
        equity[t] = cash + side * qty * c
        if signal[t] != 0:
            order = (int(signal[t]), equity[t], c, atr[t])
    if side != 0:
        if close_at_end:
            leave(n - 1, c * (1.0 - side * slippage), "end", fee)
            equity[-1] = cash
        else:
            trades.append(
                RefTrade(
                    side="long" if side > 0 else "short",
                    entry_bar=entry_bar,
                    exit_bar=n - 1,
                    qty=qty,
                    entry_price=entry,
                    exit_price=c,
                    fees=entry_fee,
                    reason="open",
                )
            )
    return trades, equity
