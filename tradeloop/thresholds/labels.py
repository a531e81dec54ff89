"""Triple-barrier labels for the events a strategy fires.

For an event decided at the close of bar ``i`` the position opens at bar ``i + 1``'s open
(the backtest's fill rule). Barriers, in return units of that entry price:

* profit target ``+ profit_mult * sigma_i`` and stop ``- stop_mult * sigma_i``, where
  ``sigma_i`` is the rolling standard deviation of log returns known at bar ``i``;
* a time limit of ``horizon`` bars, after which the position is valued at that bar's close.

Bars are scanned from the entry bar on, on their high/low. A bar that touches both
barriers counts as a stop (the backtest's pessimistic rule); an open already past a
barrier fills at the open. Shorts mirror everything. The label is 1 when the return after
``cost`` (round-trip fees and slippage) is positive: acting on the signal paid.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, Field

from tradeloop.errors import ConfigError

# how an event ended
TARGET, STOP, TIME, UNFINISHED = 0, 1, 2, 3
BARRIERS = ("target", "stop", "time", "unfinished")


class BarrierConfig(BaseModel):
    """Triple-barrier parameters (volatility-scaled target and stop, time limit in bars)."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    profit_mult: float = Field(default=2.0, gt=0.0)
    stop_mult: float = Field(default=1.0, gt=0.0)
    horizon: int = Field(default=24, ge=1)
    vol_window: int = Field(default=20, ge=2)
    cost: float = Field(default=0.002, ge=0.0, lt=0.1, description="round-trip fees + slippage")


@nb.njit(cache=True)
def _barriers(
    open_, high, low, close, events, direction, sigma, profit_mult, stop_mult, horizon
):  # pragma: no cover - compiled
    m = events.size
    n = close.size
    ret = np.full(m, np.nan)
    exit_bar = np.full(m, -1, dtype=np.int64)
    kind = np.full(m, UNFINISHED, dtype=np.int8)
    for e in range(m):
        i = events[e]
        entry = i + 1
        if entry >= n or not sigma[e] > 0.0:
            continue
        d = direction[e]
        px = open_[entry]
        up = px * (1.0 + profit_mult * sigma[e]) if d > 0 else px * (1.0 - profit_mult * sigma[e])
        dn = px * (1.0 - stop_mult * sigma[e]) if d > 0 else px * (1.0 + stop_mult * sigma[e])
        last = entry + horizon - 1
        # a barrier touched before the data ends closes the label even when the time limit
        # lies beyond the data; otherwise the outcome is not known yet (UNFINISHED)
        for t in range(entry, min(last, n - 1) + 1):
            o, h, lo = open_[t], high[t], low[t]
            fill = np.nan
            if d > 0:
                if t > entry and o <= dn:
                    fill, kind[e] = o, STOP
                elif t > entry and o >= up:
                    fill, kind[e] = o, TARGET
                elif lo <= dn:
                    fill, kind[e] = dn, STOP
                elif h >= up:
                    fill, kind[e] = up, TARGET
            else:
                if t > entry and o >= dn:
                    fill, kind[e] = o, STOP
                elif t > entry and o <= up:
                    fill, kind[e] = o, TARGET
                elif h >= dn:
                    fill, kind[e] = dn, STOP
                elif lo <= up:
                    fill, kind[e] = up, TARGET
            if fill == fill:
                ret[e] = d * (fill / px - 1.0)
                exit_bar[e] = t
                break
        if exit_bar[e] < 0 and last < n:
            ret[e] = d * (close[last] / px - 1.0)
            exit_bar[e] = last
            kind[e] = TIME
    return ret, exit_bar, kind


def triple_barrier_labels(
    candles: pl.DataFrame,
    event_rows: np.ndarray,
    *,
    direction: np.ndarray | None = None,
    config: BarrierConfig = BarrierConfig(),
) -> pl.DataFrame:
    """Label events of ONE symbol's candles (sorted by ts).

    Returns one row per event: ``ts`` (decision bar), ``t1`` (ts of the exit bar: the end of
    the label's information window, used for purging), ``ret`` (gross), ``net_ret``,
    ``barrier`` and ``label``. Events still open at the data's end (no barrier touched and the
    time limit past the data) are dropped: their outcome is not known yet (closed labels only).
    An event closed by a barrier is kept however far its time limit reaches: its label reads
    only bars up to ``t1``, so it is the same on any longer history.
    """
    for col in ("ts", "open", "high", "low", "close"):
        if col not in candles.columns:
            raise ConfigError(f"triple_barrier_labels needs column {col!r}; got {candles.columns}")
    rows = np.asarray(event_rows, dtype=np.int64)
    if rows.size and (rows.min() < 0 or rows.max() >= candles.height):
        raise ConfigError(f"event rows must lie in [0, {candles.height}); got {rows.min()}..{rows.max()}")
    dirs = np.ones(rows.size, dtype=np.float64) if direction is None else np.asarray(direction, dtype=np.float64)
    close = candles["close"].to_numpy().astype(np.float64)
    logret = np.diff(np.log(close), prepend=np.nan)
    sigma_all = pl.Series(logret).rolling_std(config.vol_window).fill_null(math.nan).to_numpy()
    ret, exit_bar, kind = _barriers(
        candles["open"].to_numpy().astype(np.float64),
        candles["high"].to_numpy().astype(np.float64),
        candles["low"].to_numpy().astype(np.float64),
        close,
        rows,
        dirs,
        np.ascontiguousarray(sigma_all[rows]),
        config.profit_mult,
        config.stop_mult,
        config.horizon,
    )
    ts = candles["ts"].to_numpy()
    done = kind != UNFINISHED
    net = ret - config.cost
    return pl.DataFrame(
        {
            "row": rows[done],
            "ts": ts[rows[done]],
            "t1": ts[exit_bar[done]],
            "direction": dirs[done].astype(np.int8),
            "sigma": sigma_all[rows[done]],
            "ret": ret[done],
            "net_ret": net[done],
            "barrier": pl.Series([BARRIERS[k] for k in kind[done]], dtype=pl.Utf8),
            "label": (net[done] > 0.0).astype(np.int8),
        }
    )
