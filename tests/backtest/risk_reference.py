"""A plain-Python portfolio backtest that applies ``tradeloop.risk`` bar by bar, as the live engine does.

Slow and simple, for tests only. Fills follow ``tradeloop.backtest.kernel``'s docstring (rules
1-4 and 6: next-open market fills with slippage and fees, exits before entries, reversals,
limit entries resting ``limit_ttl_bars`` candles and filling on the queue rule, one portfolio
or one per symbol, fixed-fraction sizing; no stops), written out again here. The risk engine is
``tradeloop.risk`` itself, driven as ``live.engine`` drives it: at each close the group's
``RiskState.on_equity``, then the signals as ``OrderIntent`` s (``live.signal_intents.intents``' shape,
with shorts and limit prices) plus ``flatten_intents`` on a trip with ``flatten_on_kill``,
all through ``check_batch`` against a ``PortfolioSnapshot`` at the close. Nobody acknowledges
a trip. What is approved fills at the symbol's next open; an entry whose position is still held
there (its exit was denied) is dropped, an entry fill of at most ``FLAT_QTY`` units does not happen
(dust the risk engine counts as flat), any signal cancels the symbol's resting limit entry, and a trip
cancels every resting limit entry of its portfolio.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from tradeloop.backtest import BacktestConfig, PriceArrays
from tradeloop.risk import (
    MarketRules,
    PortfolioSnapshot,
    RiskApproved,
    RiskConfig,
    RiskState,
    check_batch,
    flatten_intents,
)
from tradeloop.risk.limits import FLAT_QTY
from tradeloop.strategies.signals import ENTER_LONG, ENTER_SHORT, EXIT_LONG, EXIT_SHORT
from tradeloop.trading import InstrumentId, OrderIntent, OrderIntentKind, OrderSide, OrderType

VENUE = "backtest"


@dataclass
class _Order:
    """What one symbol sends to its next open."""

    exit: bool = False
    flatten: bool = False
    entry: float = 0.0  # +1 long, -1 short, 0 none
    quote: float = 0.0
    limit_price: float = math.nan


@dataclass
class RefRun:
    """Trades as the ledger's (symbol, side, entry_ts, exit_ts, qty, entry_price, exit_price, fees,
    exit_reason), denials as (ts, portfolio, symbol, kind, rule, limit, value), trips as (ts,
    portfolio, rule, equity, reference, value, limit), equity per bar and portfolio."""

    trades: list[tuple] = field(default_factory=list)
    denials: list[tuple] = field(default_factory=list)
    trips: list[tuple] = field(default_factory=list)
    equity: list[list[float]] = field(default_factory=list)


def risk_reference(
    prices: PriceArrays,
    config: BacktestConfig,
    risk: RiskConfig,
    *,
    markets: Mapping[str, MarketRules] | None = None,
) -> RefRun:
    """Run the reference (see the module docstring)."""
    assert config.stop_loss is None and config.take_profit is None and config.trailing_stop is None
    assert config.atr_stop is None and config.atr_trailing is None and not config.close_at_end
    assert config.sizing == "fixed_fraction"
    n, k = prices.close.shape
    syms = prices.symbols
    inst = [InstrumentId(VENUE, s) for s in syms]
    groups = [list(range(k))] if config.cash_sharing else [[j] for j in range(k)]
    names = ["portfolio"] if config.cash_sharing else list(syms)
    group_of = [0] * k if config.cash_sharing else list(range(k))
    fee, slip = config.fee_rate, config.slippage
    maker = config.fee_rate if config.maker_fee_rate is None else config.maker_fee_rate
    limit_mode = config.entry_order == "limit"
    rules = {InstrumentId(VENUE, s): r for s, r in (markets or {}).items()}
    cash = [config.init_cash] * len(groups)
    states = [RiskState(risk) for _ in groups]
    qty = [0.0] * k
    entry_px, entry_bar, entry_fee = [0.0] * k, [0] * k, [0.0] * k
    last = [math.nan] * k
    orders: list[_Order | None] = [None] * k
    resting: list[dict | None] = [None] * k
    out = RefRun()

    def trade(j: int, t: int, px: float, fees: float, reason: str) -> None:
        side = "long" if qty[j] > 0 else "short"
        out.trades.append(
            (syms[j], side, prices.ts[entry_bar[j]], prices.ts[t], abs(qty[j]), entry_px[j], px, fees, reason)
        )

    def enter(j: int, t: int, d: float, q: float, px: float, fee_rate: float) -> None:
        g = group_of[j]
        paid = q * px * fee_rate
        cash[g] += -(q * px + paid) if d > 0 else q * px - paid
        qty[j] = q if d > 0 else -q
        entry_px[j], entry_bar[j], entry_fee[j] = px, t, paid

    def decide(t: int, g: int, equity: float, members: list[int]) -> None:
        """The live engine's close: kill switch, intents (+ flatten), check_batch, orders."""
        ts, state = int(prices.ts[t]), states[g]
        trip = state.on_equity(ts, equity)
        if trip is not None:
            out.trips.append((ts, names[g], str(trip.rule), trip.equity, trip.reference, trip.value, trip.limit))
            for j in members:  # a trip cancels the resting limit entries
                resting[j] = None
        snapshot = PortfolioSnapshot(
            equity=equity,
            cash=cash[g],
            positions={inst[j]: qty[j] for j in members if qty[j] != 0.0},
            prices={inst[j]: last[j] for j in members if math.isfinite(last[j])},
        )
        intents: list[OrderIntent] = []
        signaled = set()
        for j in members:
            flags = int(prices.signal[t, j])
            if flags:
                signaled.add(j)
                intents += _intents(
                    flags,
                    instrument=inst[j],
                    position=qty[j],
                    quote=config.fraction * equity,
                    close=last[j],
                    limit_offset=config.limit_offset if limit_mode else None,
                )
        if trip is not None and risk.flatten_on_kill:
            intents += flatten_intents(snapshot)
        if not intents and not signaled:
            return
        new = {j: _Order() for j in signaled}
        results = check_batch(intents, snapshot, state=state, ts=ts, markets=rules)
        entries = []
        for intent, result in zip(intents, results, strict=True):
            j = syms.index(intent.instrument.symbol)
            if not isinstance(result, RiskApproved):
                out.denials.append(
                    (ts, names[g], syms[j], str(intent.kind), str(result.rule), result.limit, result.value)
                )
            elif intent.kind is OrderIntentKind.FLATTEN:
                new.setdefault(j, _Order()).flatten = True
            elif intent.kind.reduces:
                new.setdefault(j, _Order()).exit = True
            else:
                entries.append((j, intent))
        for j, intent in entries:
            o = new[j]
            if qty[j] == 0.0 or o.exit or o.flatten:  # an entry behind a denied exit is dropped
                o.entry, o.quote = float(intent.side.sign), config.fraction * equity
                o.limit_price = math.nan if intent.price is None else intent.price
        for j, o in new.items():
            orders[j] = o

    for t in range(n):
        opens = prices.open[t]
        for j in range(k):  # exits at the open, every symbol
            o = orders[j]
            if o is None or not math.isfinite(opens[j]) or not (o.exit or o.flatten) or qty[j] == 0.0:
                continue
            g, q = group_of[j], abs(qty[j])
            if qty[j] > 0:
                px = opens[j] * (1 - slip)
                cash[g] += q * px * (1 - fee)
            else:
                px = opens[j] * (1 + slip)
                cash[g] -= q * px * (1 + fee)
            trade(j, t, px, entry_fee[j] + q * px * fee, "kill_switch" if o.flatten else "signal")
            qty[j] = 0.0
        for j in range(k):  # then entries, by symbol
            o = orders[j]
            if o is None or not math.isfinite(opens[j]):
                continue
            orders[j] = None
            resting[j] = None  # an order cancels the resting limit entry
            if o.entry == 0.0 or qty[j] != 0.0:
                continue
            if limit_mode:
                resting[j] = {"d": o.entry, "price": o.limit_price, "qty": o.quote / o.limit_price, "left": 0}
                resting[j]["left"] = config.limit_ttl_bars
                continue
            g = group_of[j]
            px = opens[j] * (1 + slip) if o.entry > 0 else opens[j] * (1 - slip)
            q = min(o.quote / px, cash[g] / (px * (1 + fee)))
            if q > FLAT_QTY:  # no dust position under risk
                enter(j, t, o.entry, q, px, fee)
        for j in range(k):  # resting limit entries on the bar's range
            r = resting[j]
            if r is None or not math.isfinite(opens[j]):
                continue
            lp, hi, lo = r["price"], prices.high[t, j], prices.low[t, j]
            if r["d"] > 0:
                fill = (opens[j] if opens[j] < lp else lp) if lo < lp else math.nan
            else:
                fill = (opens[j] if opens[j] > lp else lp) if hi > lp else math.nan
            if math.isnan(fill):
                r["left"] -= 1
                if r["left"] == 0:
                    resting[j] = None
                continue
            resting[j] = None
            q = min(r["qty"], cash[group_of[j]] / (fill * (1 + maker)))
            if q > FLAT_QTY:  # no dust position under risk
                enter(j, t, r["d"], q, fill, maker)
        # the close: marks, then the risk engine per portfolio
        for j in range(k):
            if math.isfinite(prices.close[t, j]):
                last[j] = prices.close[t, j]
        row = []
        for g, members in enumerate(groups):
            e = cash[g]
            for j in members:
                if qty[j] != 0.0:
                    e += qty[j] * last[j]
            row.append(e)
            decide(t, g, e, members)
        out.equity.append(row)

    for j in range(k):  # open positions at the end, marked at the last close
        if qty[j] != 0.0:
            trade(j, n - 1, last[j], entry_fee[j], "open")
    out.trades.sort(key=lambda r: (r[2], r[0]))
    return out


def _intents(
    flags: int, *, instrument: InstrumentId, position: float, quote: float, close: float, limit_offset: float | None
) -> list[OrderIntent]:
    """``live.signal_intents.intents`` with shorts: an exit of the whole position, then an entry."""
    out = []
    exiting = (position > 0 and flags & (EXIT_LONG | ENTER_SHORT)) or (
        position < 0 and flags & (EXIT_SHORT | ENTER_LONG)
    )
    if exiting:
        long = position > 0
        out.append(
            OrderIntent(
                instrument=instrument,
                side=OrderSide.SELL if long else OrderSide.BUY,
                kind=OrderIntentKind.EXIT_LONG if long else OrderIntentKind.EXIT_SHORT,
                quantity=abs(position),
                reference_price=close,
                reduce_only=True,
            )
        )
    want_long = bool(flags & ENTER_LONG) and not flags & ENTER_SHORT
    want_short = bool(flags & ENTER_SHORT) and not flags & ENTER_LONG
    if (want_long or want_short) and (position == 0.0 or exiting) and quote > 0:
        side = OrderSide.BUY if want_long else OrderSide.SELL
        kind = OrderIntentKind.ENTER_LONG if want_long else OrderIntentKind.ENTER_SHORT
        if limit_offset is None:  # a quote amount
            out.append(
                OrderIntent(instrument=instrument, side=side, kind=kind, quote_amount=quote, reference_price=close)
            )
        else:  # units fixed at the limit price
            price = close * (1 - limit_offset) if want_long else close * (1 + limit_offset)
            out.append(
                OrderIntent(
                    instrument=instrument,
                    side=side,
                    kind=kind,
                    order_type=OrderType.LIMIT,
                    quantity=quote / price,
                    price=price,
                    reference_price=close,
                )
            )
    return out
