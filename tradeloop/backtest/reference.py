"""A plain numpy/Python reference of the SMA crossover backtest, for cross-checking.

Deliberately simple and slow: one symbol, long only, next-open fills, a fee per side,
full-equity sizing, no slippage or stops, open position marked at the last close. It
shares no code with the compiled kernel, so agreement between the two is evidence.
"""

from __future__ import annotations

import numpy as np


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
