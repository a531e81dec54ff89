"""The paper session of arbitrage execution (``live.arbitrage_paper``): made at the first start,
checked on every later one, and read back as running balances.

Rules:

1. **Made once.** A session of mode ``paper`` and strategy :data:`STRATEGY` (one
   ``tradeloop.ops.status.ARBITRAGE`` readers know), its symbols the watched ``venue:BASE-QUOTE``
   keys, ``timeframe`` ``quote``, its ``init_cash`` and ``cash`` the session's quote asset held
   over every venue (``tradeloop.arbitrage.execution`` rule 5: one quote asset, some held), its
   ``config`` ``{"arbitrage_paper": <PaperExecutionConfig.as_dict()>, "taker_fees": ...,
   "quote": ...}``: no ``BacktestConfig``, so readers that need one skip it.
2. **Resumed unchanged.** Resuming it with any other setting (``max_notional``,
   ``min_notional``, the inventory, the symbols or venues, the taker fees) is refused with a
   ConfigError naming what changed: its balances and results follow from the settings it
   started with; a new setting is a new ``--paper-session``. A session of another mode or
   strategy (a live session of the same name), or one ``stopped`` or ``finished`` (final), is
   refused too. :func:`check_paper_session` runs every check the fees are not needed for, so
   the CLI refuses before it connects to any venue.
3. **Balances** are read once at the start from one aggregate query over the session's fills
   (:func:`held_now`); the executor keeps them up to date in memory after each pair.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from live.brokers.base import VenueAccount
from live.brokers.quote_paper import QuotePaperBroker, key_venue, quote_key
from tradeloop.arbitrage import (
    LegFill,
    PairPlan,
    PairResult,
    PaperExecutionConfig,
    TopOfBook,
    assets,
    balances,
    session_quote,
)
from tradeloop.arbitrage.execution import Balances
from tradeloop.errors import ConfigError, SessionStateError
from tradeloop.ops import Fill, OpsStore, Order
from tradeloop.ops.models import TradingSession
from tradeloop.ops.status import ARBITRAGE as STRATEGY
from tradeloop.ops.store import OPEN_STATUSES
from tradeloop.trading import OrderSide

FINAL = ("stopped", "finished")


def leg_id(session_id: int, opportunity_id: int, side: OrderSide) -> str:
    """A leg's client order id (rule 4): at most 36 characters of [A-Za-z0-9-]."""
    return f"tl{session_id}-arb{opportunity_id}-{side.value[0]}"


def refuse_real_broker(broker: object) -> QuotePaperBroker:
    """``broker`` when it is the quote paper book; else a ConfigError (``live.arbitrage_paper`` rule 3)."""
    if isinstance(broker, QuotePaperBroker) and broker.venue == "paper" and not isinstance(broker, VenueAccount):
        return broker
    raise ConfigError(
        f"arbitrage execution is paper only: broker {type(broker).__name__} (venue "
        f"{getattr(broker, 'venue', '?')!r}) may reach a real venue; give the quote paper book "
        "(live.brokers.quote_paper.QuotePaperBroker) or run detection only"
    )


@dataclass(frozen=True, kw_only=True, slots=True)
class Execution:
    """What became of one opening: the plan, the legs' final statuses and the pair's result
    (None: skipped, or nothing filled)."""

    opportunity_id: int
    plan: PairPlan
    statuses: dict[str, str]  # client order id -> status
    result: PairResult | None

    def event(self) -> dict:
        """As published on the bus stream ``arbitrage_executions``."""
        return {
            "id": self.opportunity_id, "size": self.plan.size, "limited_by": self.plan.limited_by,
            "orders": dict(self.statuses), **(self.result.as_dict() if self.result is not None else {}),
        }  # fmt: skip


def session_keys(symbols: Iterable[str], venues: Iterable[str]) -> list[str]:
    """The session's symbols: every watched symbol on every venue, as quote keys."""
    return [quote_key(v, s) for v in sorted(venues) for s in symbols]


def stored_config(config: PaperExecutionConfig, *, symbols: Iterable[str], taker_fees: Mapping[str, float]) -> dict:
    """The session's ``config`` (rule 1)."""
    quote, _ = session_quote(config.inventory, symbols)
    return {"arbitrage_paper": config.as_dict(), "taker_fees": dict(taker_fees), "quote": quote}


def check_paper_session(
    row: TradingSession | None,
    config: PaperExecutionConfig,
    *,
    symbols: Iterable[str],
    venues: Iterable[str],
    taker_fees: Mapping[str, float] | None = None,
) -> None:
    """Rule 2's checks of an existing session ``row`` (None: it will be made); the taker fees
    only when given (they come from the venues)."""
    symbols = list(symbols)
    session_quote(config.inventory, symbols)  # one quote asset, some held (a ConfigError naming the fix)
    if row is None:
        return
    name = config.session
    if row.mode != "paper" or row.strategy != STRATEGY:
        raise ConfigError(
            f"session {name!r} is a {row.mode} {row.strategy} session; paper arbitrage keeps its own: "
            "give another --paper-session name"
        )
    if row.status in FINAL:
        raise SessionStateError(f"session {name!r} is {row.status} (final); give another --paper-session name")
    stored = row.config or {}
    before = stored.get("arbitrage_paper", {})
    now = config.as_dict()
    changed = {
        "--max-notional": (before.get("max_notional"), now["max_notional"]),
        "--min-notional": (before.get("min_notional"), now["min_notional"]),
        "--inventory": (before.get("inventory"), now["inventory"]),
        "--symbol/--venue": (sorted(row.symbols), sorted(session_keys(symbols, venues))),
    }
    if taker_fees is not None:
        changed["--taker-fee"] = (stored.get("taker_fees"), dict(taker_fees))
    diffs = [f"{option} was {old}, now {new}" for option, (old, new) in changed.items() if old != new]
    if diffs:
        raise ConfigError(
            f"session {name!r} started with other settings ({'; '.join(diffs)}); its balances and results follow "
            "from those: give the same settings, or a new --paper-session name for the new ones"
        )


def open_session(
    store: OpsStore, config: PaperExecutionConfig, *, symbols: list[str], taker_fees: Mapping[str, float]
) -> TradingSession:
    """Make the session (rule 1) or resume it after rule 2's checks."""
    venues = sorted(taker_fees)
    try:
        row: TradingSession | None = store.session(config.session)
    except SessionStateError:
        row = None
    check_paper_session(row, config, symbols=symbols, venues=venues, taker_fees=taker_fees)
    if row is not None:
        return row
    _, cash = session_quote(config.inventory, symbols)
    return store.create_session(
        name=config.session, strategy=STRATEGY, exchange=venues[0] if venues else "paper", timeframe="quote",
        symbols=session_keys(symbols, venues), mode="paper", init_cash=cash,
        config=stored_config(config, symbols=symbols, taker_fees=taker_fees),
    )  # fmt: skip


def held_now(db: Session, session_id: int, inventory: Mapping[str, Mapping[str, float]]) -> Balances:
    """Venue -> asset -> held: the inventory plus every fill of the session, summed in one
    query per (symbol, side) (rule 3)."""
    rows = db.execute(
        select(
            Fill.symbol, Fill.side, func.sum(Fill.quantity), func.sum(Fill.quantity * Fill.price), func.sum(Fill.fee)
        )
        .where(Fill.session_id == session_id)
        .group_by(Fill.symbol, Fill.side)
    )
    totals = []
    for key, side, quantity, notional, fee in rows:
        if not quantity:
            continue
        venue, symbol = key_venue(key)
        totals.append(
            LegFill(venue=venue, symbol=symbol, side=OrderSide(side), quantity=float(quantity),
                    price=float(notional) / float(quantity), fee=float(fee))
        )  # fmt: skip
    return balances(inventory, totals)


def pair_fills(db: Session, session_id: int, *, order_ids: list[int]) -> list[LegFill]:
    """The fills of the orders ``order_ids`` (a pair's legs), oldest first."""
    query = select(Fill).where(Fill.session_id == session_id, Fill.order_id.in_(order_ids)).order_by(Fill.id)
    out = []
    for f in db.scalars(query):
        venue, symbol = key_venue(f.symbol)  # every leg's symbol is its key
        out.append(
            LegFill(venue=venue, symbol=symbol, side=OrderSide(f.side), quantity=f.quantity, price=f.price, fee=f.fee)
        )
    return out


def in_flight_left(
    db: Session,
    session_id: int,
    held: Balances,
    *,
    tops: Mapping[str, TopOfBook],
    taker_fees: Mapping[str, float],
) -> Balances:
    """``held`` less what the session's orders still in flight may take: a buy's rest at its
    venue's ask (``tops``, by quote key) with its fee, a sell's rest of the base asset."""
    out = {v: dict(a) for v, a in held.items()}
    query = select(Order).where(Order.session_id == session_id, Order.status.in_(OPEN_STATUSES))
    for order in db.scalars(query):
        venue, symbol = key_venue(order.symbol)
        base, quote = assets(symbol)
        left = max((order.quantity or 0.0) - order.filled_qty, 0.0)
        venue_held = out.setdefault(venue, {})
        if order.side == OrderSide.BUY.value:
            top = tops.get(order.symbol)
            price = top.ask if top is not None else (order.avg_price or 0.0)
            venue_held[quote] = venue_held.get(quote, 0.0) - left * price * (1 + taker_fees.get(venue, 0.0))
        else:
            venue_held[base] = venue_held.get(base, 0.0) - left
    return out
