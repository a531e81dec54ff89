"""The risk stage of a session split in capital slices (``live.slices`` rule 6), in place of
``live.risk_stage.pre_trade``: each slice's intents against its own book and limits, then the
intents every slice approved, together, against the whole session.

* Entries of a halted symbol or of a session awaiting an ack are refused first
  (``live.reconcile.refuse_entry``, audited ``entry_refused``), whichever slice asks.
* **Slice check**: ``tradeloop.risk.check_batch`` on the slice's intents, its snapshot, and a
  ``RiskState`` under the slice's limits (``tradeloop.challengers.slices.slice_risk_config``),
  whose throttle counts the slice's own orders: only those the session check approves too
  (recorded after it).
* **Session check**: the reductions the slice checks approved pass (each proved it shrinks its
  own book's position; the books may net to anything: a champion's long against a slice's short
  is flat for the session, and either's exit must still go), counted in the session's throttle;
  then ``check_batch`` on the approved entries of all slices at once (the champion's first, then
  each challenger's by artifact), against the whole session's snapshot after those reductions
  (:func:`whole_snapshot`: cash, equity and net positions summed over the books, with each
  instrument's gross over them: open positions and gross exposure count every book's position
  unsigned) and the session's ``RiskState`` (its throttle and kill switch, stored with the session).
* A denial, at either check, is audited ``risk_denied`` and published on the ``risk`` stream
  with the rule, limit and value as ``live.risk_stage`` does, plus ``slice`` (the challenger's
  artifact, or ``champion``) and ``scope`` (``slice`` or ``session``); never raised. Exits are
  never refused at the session check (the slice check's rule 2 proved they reduce).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy.orm import Session

from live.reconcile import refuse_entry
from tradeloop.observability import SessionMetrics
from tradeloop.ops import OpsStore, TradingSession
from tradeloop.risk import (
    MarketRules,
    PortfolioSnapshot,
    RiskApproved,
    RiskDenied,
    RiskState,
    check_batch,
    is_reducing,
)
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
    """The session's book: the slices' cash, equity and net positions summed, each instrument's
    gross (``PortfolioSnapshot.gross``: its quantity unsigned over the books), prices merged."""
    positions: dict[InstrumentId, float] = {}
    gross: dict[InstrumentId, float] = {}
    prices: dict[InstrumentId, float] = {}
    for book in books:
        prices.update(book.prices)
        for inst, q in book.positions.items():
            positions[inst] = positions.get(inst, 0.0) + q
            gross[inst] = gross.get(inst, 0.0) + abs(q)
    return PortfolioSnapshot(
        equity=sum(b.equity for b in books), cash=sum(b.cash for b in books), positions=positions, prices=prices,
        gross=gross,
    )  # fmt: skip


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
    approved: list[tuple[SliceIntents, OrderIntent]] = []
    for book in books:
        allowed = [i for i in book.intents if not refuse_entry(db, session.id, i)]
        if not allowed:
            continue
        for result in check_batch(allowed, book.snapshot, state=book.state, ts=ts, markets=markets, record=False):
            if isinstance(result, RiskApproved):
                approved.append((book, result.intent))
            else:
                _denied(db, session, result, name=book.name, scope="slice")
    if not approved:
        return []
    whole = whole_snapshot([b.snapshot for b in books])
    passed: dict[int, OrderIntent] = {}
    for k, (_, intent) in enumerate(approved):  # rule: exits pass; they move the whole book first
        if is_reducing(intent):
            passed[k] = intent
            state.record_order(ts)
            whole = _after_exit(whole, intent)
    entries = [k for k in range(len(approved)) if k not in passed]
    verdicts = check_batch([approved[k][1] for k in entries], whole, state=state, ts=ts, markets=markets)
    for k, result in zip(entries, verdicts, strict=True):
        if isinstance(result, RiskApproved):
            passed[k] = result.intent
        else:
            _denied(db, session, result, name=approved[k][0].name, scope="session")
    out = []
    for k, (book, _) in enumerate(approved):
        if k in passed:
            book.state.record_order(ts)  # the slice's throttle counts what was approved at both checks
            out.append((book.name, passed[k]))
    return out


def _after_exit(whole: PortfolioSnapshot, intent: OrderIntent) -> PortfolioSnapshot:
    inst = intent.instrument
    price = intent.price or intent.reference_price or whole.prices.get(inst)
    if price is None:
        return whole
    qty = intent.quantity if intent.quantity is not None else (intent.quote_amount or 0.0) / price
    return whole.after(inst, intent.side.sign * qty, price, reduces=True)


def _denied(db: Session, session: TradingSession, result: RiskDenied, *, name: str, scope: str) -> None:
    detail = {**result.detail(), "slice": name, "scope": scope}
    OpsStore.audit(db, "risk_denied", session_id=session.id, detail=detail)
    OpsStore.add_event(db, "risk", {"event": "risk_denied", **detail}, session_id=session.id)
    log.warning("session %s: %s slice %s: %s", session.name, scope, name[:12], result.message)
    SessionMetrics(session=session.name, venue=session.exchange).risk_denied(str(result.rule))
