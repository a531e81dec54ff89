"""One capital slice as the engine holds it (``live.slices``), and the database writes about it.

``Slice.state``: ``waiting`` (named, not funded yet), ``open`` (trading), ``closing`` (being
flattened). ``retiring``: its challenger is no longer in shadow (retired, promoted, refused, or
its own loss limit tripped: ``why`` says which), so the funding rules close it. An open slice
whose model cannot be read now (``model`` None, not refused) holds: no entries, its exits and
protective legs still work, and the model is read again at the next sync.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from live.brokers.base import OrderState
from live.brokers.paper import PaperBroker
from live.entries import EntryPlanner
from live.venues import key_of
from tradeloop.errors import RiskError
from tradeloop.ops import OpsStore, Order
from tradeloop.ops.challenger_models import ChallengerRow
from tradeloop.ops.store import OPEN_STATUSES
from tradeloop.portfolio import Portfolio
from tradeloop.risk import RiskConfig, RiskState
from tradeloop.thresholds import ThresholdModel
from tradeloop.trading import OrderIntent

__all__ = ["ACTIVE", "Slice", "audit", "open_orders", "risk_state", "set_row"]

log = logging.getLogger(__name__)

ACTIVE = ("shadow", "recommended")  # a challenger whose slice trades; any other status closes it


@dataclass(kw_only=True, eq=False)
class Slice:
    """One challenger's capital slice (module rules)."""

    row_id: int
    artifact: str
    share: float
    prefix: str
    venue: str  # the session's exchange: positions are keyed as the session names them (live.venues)
    model: ThresholdModel | None  # None: holding (unreadable now) or closing without one
    broker: PaperBroker | None  # its paper book (None: on a venue, live.slice_venue)
    planner: EntryPlanner
    risk: RiskState
    state: str = "waiting"
    portfolio: Portfolio = field(default_factory=lambda: Portfolio(cash=0.0))
    since: int | None = None  # the bar it was funded at
    equity: float = 0.0  # at the last close
    before: float = 0.0  # at the close before it (the evidence's base)
    ended: list[OrderState] = field(default_factory=list)
    intents: list[OrderIntent] = field(default_factory=list)
    retiring: bool = False
    why: str | None = None  # why it is retiring, or why it waits for its funding
    announced: bool = False  # its waiting was audited (``challengers.slice_state`` = waiting)

    @property
    def funded(self) -> bool:
        return self.state in ("open", "closing")

    def positions(self) -> dict[str, float]:
        """Open positions by session key (signed quantity)."""
        return {key_of(self.venue, p.instrument): p.quantity for p in self.portfolio.positions()}


def open_orders(db: Session, session_id: int, s: Slice) -> list[Order]:
    """The slice's orders still open."""
    return list(
        db.scalars(
            select(Order).where(
                Order.session_id == session_id, Order.capital_slice == s.artifact, Order.status.in_(OPEN_STATUSES)
            )
        )
    )


def set_row(db: Session, s: Slice, **values: object) -> ChallengerRow:
    """Write ``values`` on the slice's challenger row (in the caller's transaction)."""
    row = db.get(ChallengerRow, s.row_id)
    assert row is not None  # challengers are never deleted
    for k, v in values.items():
        setattr(row, k, v)
    return row


def audit(db: Session, session_id: int, event: str, s: Slice, **detail: object) -> None:
    OpsStore.audit(db, event, session_id=session_id, detail={"artifact": s.artifact, **detail})


def retire(db: Session, session_id: int, s: Slice, detail: dict) -> None:
    """Retired in the caller's transaction (audited ``challenger_retired`` with ``detail``), so the
    funding rules close its slice."""
    row = db.get(ChallengerRow, s.row_id)
    if row is not None and row.status in ACTIVE:
        row.status = "retired"
        OpsStore.audit(
            db, "challenger_retired", session_id=session_id, actor="engine", detail={"artifact": s.artifact, **detail}
        )
    s.retiring, s.intents = True, []
    s.why = s.why or str(detail.get("why") or detail.get("error") or "retired")


def risk_state(row: ChallengerRow, config: RiskConfig) -> RiskState:
    """The slice's stored risk state (a fresh one before its first bar, or when it does not parse)."""
    if not row.slice_risk_state:
        return RiskState(config)
    try:
        return RiskState.from_json(json.dumps(row.slice_risk_state), config=config)
    except RiskError as exc:
        log.error("challenger %s: its slice's stored risk state is unreadable (%s); starting afresh", row.artifact, exc)
        return RiskState(config)
