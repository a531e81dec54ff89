"""The engine's risk stage, between decide and persist (``tradeloop.risk`` holds the rules).

* :func:`kill_switch` runs on the bar's marked equity: an operator's ack (``needs_ack``
  cleared) re-bases a tripped switch on this equity; a trip puts the session in reduce-only
  until ``tradeloop live ack`` (audited ``kill_switch_tripped``, published on the ``risk``
  stream; a session already waiting for an ack for another reason gets the trip added to
  the reason its operator reads, since one ack clears both), cancels the resting limit entries
  (``live.order_manager`` rule 5: sent after the bar's commit) and, with ``flatten_on_kill``,
  returns the reduce-only orders that close every position.
* :func:`pre_trade` refuses the entries of a halted symbol or of a session awaiting an ack
  (``entry_refused``), then judges every intent with ``tradeloop.risk.check_batch``: a denial
  is audited (``risk_denied``) and published on the ``risk`` stream with its rule, limit and
  value, never raised; exits are never refused.
* :func:`portfolio_snapshot` values the portfolio for both at the last closes (a position
  without a close yet, reconciled at start, at its mark).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from sqlalchemy.orm import Session

from live.order_manager import cancel_resting_entries
from live.reconcile import refuse_entry
from tradeloop.observability import SessionMetrics
from tradeloop.ops import OpsStore, TradingSession
from tradeloop.portfolio import Portfolio
from tradeloop.risk import MarketRules, PortfolioSnapshot, RiskApproved, RiskConfig, RiskState, check_batch
from tradeloop.risk.checks import flatten_intents
from tradeloop.trading import InstrumentId, OrderIntent

log = logging.getLogger(__name__)


def portfolio_snapshot(portfolio: Portfolio, closes: Mapping[InstrumentId, float]) -> PortfolioSnapshot:
    """The portfolio's own snapshot, priced also for the instruments it does not hold."""
    held = portfolio.snapshot()
    return PortfolioSnapshot(
        equity=held.equity, cash=held.cash, positions=held.positions, prices={**held.prices, **closes}
    )


def kill_switch(
    db: Session,
    *,
    session: TradingSession,
    row: TradingSession,
    state: RiskState,
    config: RiskConfig,
    ts: int,
    equity: float,
    snapshot: Callable[[], PortfolioSnapshot],
) -> list[OrderIntent]:
    """The kill switch on the bar's equity (module rules); the flatten orders, if any."""
    if state.tripped is not None and row.needs_ack is None:
        state.acknowledge()
    trip = state.on_equity(ts, equity)
    if trip is None:
        return []
    detail = {"ts": ts, **trip.detail()}
    if not OpsStore.require_ack(db, session.id, trip.message, event="kill_switch_tripped", detail=detail):
        # already waiting for an ack (a balance drift, say): the one ack clears both, so the
        # reason the operator reads names the trip too
        row.needs_ack = f"{row.needs_ack}; and kill switch: {trip.message}"[:300]
        OpsStore.audit(db, "kill_switch_tripped", session_id=session.id, detail=detail)
    OpsStore.add_event(db, "risk", {"event": "kill_switch_tripped", **detail}, session_id=session.id)
    log.error("session %s: kill switch tripped: %s", session.name, trip.message)
    SessionMetrics(session=session.name, venue=session.exchange).kill_switch_tripped()
    cancel_resting_entries(db, session.id, reason=f"kill switch: {trip.message}")
    return flatten_intents(snapshot()) if config.flatten_on_kill else []


def pre_trade(
    db: Session,
    *,
    session: TradingSession,
    intents: list[OrderIntent],
    snapshot: Callable[[], PortfolioSnapshot],
    state: RiskState,
    ts: int,
    markets: Mapping[InstrumentId, MarketRules],
) -> list[OrderIntent]:
    """The intents that may be sent (module rules), in the order given."""
    allowed = [intent for intent in intents if not refuse_entry(db, session.id, intent)]
    if not allowed:
        return []
    out = []
    for result in check_batch(allowed, snapshot(), state=state, ts=ts, markets=markets):
        if isinstance(result, RiskApproved):
            out.append(result.intent)
            continue
        detail = result.detail()
        OpsStore.audit(db, "risk_denied", session_id=session.id, detail=detail)
        OpsStore.add_event(db, "risk", {"event": "risk_denied", **detail}, session_id=session.id)
        log.warning("session %s: %s", session.name, result.message)
        SessionMetrics(session=session.name, venue=session.exchange).risk_denied(str(result.rule))
    return out
