"""The risk stage of a session split in capital slices (``live.slices`` rule 6), in place of
``live.risk_stage.pre_trade``: each slice's intents against its own book and limits, then the
intents every slice approved, together, against the whole session.

* Entries of a halted symbol or of a session awaiting an ack are refused first
  (``live.reconcile.refuse_entry``, audited ``entry_refused``), whichever slice asks.
* **Slice check**: ``tradeloop.risk.check_batch`` on the slice's intents, its snapshot, and a
  ``RiskState`` under the slice's limits (``tradeloop.challengers.slices.slice_risk_config``),
  whose throttle counts the slice's own orders.
* **Session check**: ``check_batch`` on the approved intents of all slices at once (the
  champion's first, then each challenger's by artifact), the whole session's snapshot
  (:func:`whole_snapshot`: cash, equity and positions summed over the books) and the session's
  ``RiskState`` (its throttle and kill switch, stored with the session).
* A denial, at either check, is audited ``risk_denied`` and published on the ``risk`` stream
  with the rule, limit and value as ``live.risk_stage`` does, plus ``slice`` (the challenger's
  artifact, or ``champion``) and ``scope`` (``slice`` or ``session``); never raised. Exits are
  never refused (``tradeloop.risk.checks`` rule 2).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy.orm import Session

from live.reconcile import refuse_entry
from tradeloop.observability import SessionMetrics
from tradeloop.ops import OpsStore, TradingSession
from tradeloop.risk import MarketRules, PortfolioSnapshot, RiskApproved, RiskDenied, RiskState, check_batch
from tradeloop.trading import InstrumentId, OrderIntent

log = logging.getLogger(__name__)

CHAMPION = "champion"  # the champion's book in a denial's ``slice``


@dataclass(frozen=True, kw_only=True, slots=True)
class SliceIntents:
    """One book's intents at a bar, with what its slice check needs."""

    name: str  # the challenger's artifact, or CHAMPION
    intents: Sequence[OrderIntent]
    snapshot: PortfolioSnapshot
    state: RiskState  # under the slice's limits


def whole_snapshot(books: Sequence[PortfolioSnapshot]) -> PortfolioSnapshot:
    """The session's book: the slices' cash, equity and positions summed, prices merged."""
    positions: dict[InstrumentId, float] = {}
    prices: dict[InstrumentId, float] = {}
    for book in books:
        prices.update(book.prices)
        for inst, q in book.positions.items():
            positions[inst] = positions.get(inst, 0.0) + q
    return PortfolioSnapshot(
        equity=sum(b.equity for b in books), cash=sum(b.cash for b in books), positions=positions, prices=prices
    )


def pre_trade_slices(
    db: Session,
    *,
    session: TradingSession,
    books: Sequence[SliceIntents],
    state: RiskState,
    ts: int,
    markets: Mapping[InstrumentId, MarketRules],
) -> list[tuple[str, OrderIntent]]:
    """(book name, intent) of every intent both checks approved (module rules), books in order."""
    approved: list[tuple[str, OrderIntent]] = []
    for book in books:
        allowed = [i for i in book.intents if not refuse_entry(db, session.id, i)]
        if not allowed:
            continue
        for result in check_batch(allowed, book.snapshot, state=book.state, ts=ts, markets=markets):
            if isinstance(result, RiskApproved):
                approved.append((book.name, result.intent))
            else:
                _denied(db, session, result, name=book.name, scope="slice")
    if not approved:
        return []
    whole = whole_snapshot([b.snapshot for b in books])
    out = []
    verdicts = check_batch([i for _, i in approved], whole, state=state, ts=ts, markets=markets)
    for (name, _), result in zip(approved, verdicts, strict=True):
        if isinstance(result, RiskApproved):
            out.append((name, result.intent))
        else:
            _denied(db, session, result, name=name, scope="session")
    return out


def _denied(db: Session, session: TradingSession, result: RiskDenied, *, name: str, scope: str) -> None:
    detail = {**result.detail(), "slice": name, "scope": scope}
    OpsStore.audit(db, "risk_denied", session_id=session.id, detail=detail)
    OpsStore.add_event(db, "risk", {"event": "risk_denied", **detail}, session_id=session.id)
    log.warning("session %s: %s slice %s: %s", session.name, scope, name[:12], result.message)
    SessionMetrics(session=session.name, venue=session.exchange).risk_denied(str(result.rule))
