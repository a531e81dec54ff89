"""The backtest's risk engine, Python side: a ``RiskConfig`` into the kernel's arrays, its records out.

The compiled pass and its rules are ``tradeloop.backtest.kernel_risk``. Here:

1. ``None`` and ``RiskConfig(bypass=True)`` mean no risk pass (:func:`active`): the kernel gets
   ``risk=None`` and runs today's code, bit for bit.
2. A limit that is off is NaN in the parameter vector (:func:`risk_params`).
3. Market rules are per symbol and minimums only (``min_amount``, ``min_notional``); rules with
   an amount step or price tick are refused, since the backtest trades any amount at any price
   (:func:`market_matrix`); ``check_market_rules=False`` ignores them, as the live check does.
4. Denials come out as ``ts, portfolio, symbol, kind, rule, limit, value`` in the order the
   kernel judged them (by bar, then reductions before entries, by symbol); trips as ``ts,
   portfolio, rule, equity, reference, value, limit``, one per portfolio that tripped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from tradeloop.backtest import kernel_risk as kr
from tradeloop.errors import BacktestError
from tradeloop.risk import MarketRules, RiskConfig, RiskRule

NO_TS = np.empty(0, dtype=np.int64)
_RULE_NAMES = np.array([str(r) for r in RiskRule], dtype=object)
_KIND_NAMES = np.array([str(k) for k in kr.KINDS], dtype=object)
DENIALS_SCHEMA = {
    "ts": pl.Int64,
    "portfolio": pl.String,
    "symbol": pl.String,
    "kind": pl.String,
    "rule": pl.String,
    "limit": pl.Float64,
    "value": pl.Float64,
}
TRIPS_SCHEMA = {
    "ts": pl.Int64,
    "portfolio": pl.String,
    "rule": pl.String,
    "equity": pl.Float64,
    "reference": pl.Float64,
    "value": pl.Float64,
    "limit": pl.Float64,
}


def active(risk: RiskConfig | None) -> bool:
    """Whether ``risk`` asks for a risk pass (``None`` and ``bypass=True`` do not)."""
    return risk is not None and not risk.bypass


def risk_params(risk: RiskConfig) -> np.ndarray:
    """The kernel's parameter vector of ``risk`` (NaN: off)."""

    def f(x: float | None) -> float:
        return np.nan if x is None else float(x)

    out = np.full(kr.N_PARAMS, np.nan)
    out[kr.P_MAX_ORDER_NOTIONAL] = f(risk.max_order_notional)
    out[kr.P_MAX_POSITION_NOTIONAL] = f(risk.max_position_notional)
    out[kr.P_MAX_GROSS] = f(risk.max_gross_exposure)
    out[kr.P_MAX_NET] = f(risk.max_net_exposure)
    out[kr.P_MAX_OPEN] = f(risk.max_open_positions)
    out[kr.P_MAX_ORDERS] = f(risk.max_orders)
    out[kr.P_WINDOW] = float(risk.throttle_window_ms)
    out[kr.P_PRICE_BAND] = f(risk.price_band)
    out[kr.P_DAILY] = f(risk.daily_loss_limit)
    out[kr.P_DRAWDOWN] = f(risk.max_drawdown)
    out[kr.P_FLATTEN] = 1.0 if risk.flatten_on_kill else 0.0
    return out


def market_matrix(symbols: Sequence[str], markets: Mapping[str, MarketRules] | None, *, risk: RiskConfig) -> np.ndarray:
    """``(symbols, 2)``: each symbol's ``min_amount`` and ``min_notional`` (0: no such rule), NaN
    for a symbol without market rules (or all of them with ``check_market_rules=False``).

    Raises
    ------
    BacktestError
        For a symbol not traded, or rules with an amount step or price tick (rule 3).
    """
    out = np.full((len(symbols), 2), np.nan)
    if not markets or not risk.check_market_rules:
        return out
    unknown = sorted(set(markets) - set(symbols))
    if unknown:
        raise BacktestError(f"markets name symbols the backtest does not trade: {unknown}; keys are {list(symbols)}")
    for j, symbol in enumerate(symbols):
        rules = markets.get(symbol)
        if rules is None:
            continue
        if rules.amount_step or rules.price_tick:
            raise BacktestError(
                f"markets[{symbol!r}] has amount_step={rules.amount_step} / price_tick={rules.price_tick}: the "
                "backtest trades any amount at any price and checks minimums only; pass "
                "dataclasses.replace(rules, amount_step=None, price_tick=None)"
            )
        out[j] = (rules.min_amount or 0.0, rules.min_notional or 0.0)
    return out


@dataclass(frozen=True)
class RiskInputs:
    """The kernel's risk inputs for every symbol of a run (``params`` None: no risk pass)."""

    params: np.ndarray | None
    market: np.ndarray
    ts: np.ndarray

    @classmethod
    def of(
        cls,
        symbols: Sequence[str],
        ts: np.ndarray,
        risk: RiskConfig | None,
        markets: Mapping[str, MarketRules] | None,
    ) -> RiskInputs:
        """Raises ``BacktestError`` for ``markets`` without an active ``risk``, or that
        :func:`market_matrix` refuses."""
        if not active(risk):
            if markets:
                raise BacktestError("markets are read by the risk engine only; pass risk=RiskConfig(...) as well")
            return cls(None, np.empty((0, 2)), NO_TS)
        assert risk is not None
        return cls(risk_params(risk), market_matrix(symbols, markets, risk=risk), np.asarray(ts, dtype=np.int64))

    def kernel_args(self, cols: slice, group: np.ndarray, n_groups: int, signal: np.ndarray) -> tuple | None:
        """``kernel.simulate``'s ``risk`` for the symbols ``cols`` (``None``: no risk pass):
        ``(ts, params, market, members, gstart, max_denials)``, where ``members`` lists the
        symbols by group (each group's in column order), ``gstart`` each group's start in it
        and ``max_denials`` is room for every intent the signals can make (an exit and an
        entry per signal, a flatten per symbol)."""
        if self.params is None:
            return None
        members = np.argsort(group, kind="stable").astype(np.int64)
        gstart = np.searchsorted(group[members], np.arange(n_groups + 1)).astype(np.int64)
        room = 2 * int(np.count_nonzero(signal)) + signal.shape[1] + 1
        return (
            np.ascontiguousarray(self.ts),
            self.params,
            np.ascontiguousarray(self.market[cols]),
            members,
            gstart,
            room,
        )


def denials_frame(
    denials: np.ndarray, ts: np.ndarray, symbols: Sequence[str], portfolios: Sequence[str]
) -> pl.DataFrame:
    """The kernel's denial records as a frame (rule 4); ``portfolios`` has one name, or one per symbol."""
    if len(denials) == 0:
        return pl.DataFrame(schema=DENIALS_SCHEMA)
    bar = denials[:, kr.D_BAR].astype(np.int64)
    j = denials[:, kr.D_SYMBOL].astype(np.int64)
    owner = np.zeros_like(j) if len(portfolios) == 1 else j
    return pl.DataFrame(
        {
            "ts": np.asarray(ts, dtype=np.int64)[bar],
            "portfolio": np.array(portfolios, dtype=object)[owner].astype(str),
            "symbol": np.array(symbols, dtype=object)[j].astype(str),
            "kind": _KIND_NAMES[denials[:, kr.D_KIND].astype(np.int64)].astype(str),
            "rule": _RULE_NAMES[denials[:, kr.D_RULE].astype(np.int64)].astype(str),
            "limit": denials[:, kr.D_LIMIT],
            "value": denials[:, kr.D_VALUE],
        },
        schema=DENIALS_SCHEMA,
    ).sort("ts", maintain_order=True)


def trips_frame(trips: np.ndarray, ts: np.ndarray, portfolios: Sequence[str]) -> pl.DataFrame:
    """The kernel's trip records (one row per portfolio that tripped) as a frame (rule 4)."""
    g = np.flatnonzero(trips[:, kr.TR_BAR] >= 0) if len(trips) else np.empty(0, dtype=np.int64)
    if len(g) == 0:
        return pl.DataFrame(schema=TRIPS_SCHEMA)
    rows = trips[g]
    return pl.DataFrame(
        {
            "ts": np.asarray(ts, dtype=np.int64)[rows[:, kr.TR_BAR].astype(np.int64)],
            "portfolio": np.array(portfolios, dtype=object)[g].astype(str),
            "rule": _RULE_NAMES[rows[:, kr.TR_RULE].astype(np.int64)].astype(str),
            "equity": rows[:, kr.TR_EQUITY],
            "reference": rows[:, kr.TR_REFERENCE],
            "value": rows[:, kr.TR_VALUE],
            "limit": rows[:, kr.TR_LIMIT],
        },
        schema=TRIPS_SCHEMA,
    ).sort("ts", "portfolio")
