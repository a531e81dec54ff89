"""Funding, loss limits and closing of capital slices (``live.slices`` rules 2b and 4), in the
bar's transaction.

**Loss limits** (:func:`watch`, after the slices are marked): each open slice's ``RiskState``
(its limits: ``tradeloop.challengers.slices.slice_risk_config``) takes the slice's equity at the
close (``RiskState.on_equity``): a daily loss or drawdown past the session's fractions, measured
on the slice's own money, is audited ``slice_risk_tripped`` (the trip's rule, limit and value)
and retires the challenger (``challenger_retired``, with why): the slice closes below. The state
is written on the challenger row every bar (``challengers.slice_risk_state``), so a restart
keeps its day, high-water mark and throttle.

**Funding and closing** (:func:`transfer`, before anyone decides):

* a waiting slice of share ``s`` gets ``s`` of the session's equity at this close, moved out of
  the champion's cash, at the first bar where the champion's cash covers it (the champion is
  never made to sell) **and** the funded slices' shares with ``s`` stay within
  ``MAX_TOTAL_SHARE`` (a slice still closing holds its money: its share counts); audited
  ``slice_funded``. Until then it waits: audited ``slice_waiting`` with why, once (the row's
  ``slice_state`` becomes ``waiting``, which the API shows);
* a retiring open slice becomes ``closing`` (audited ``slice_closing`` with why): its resting
  limit entries are canceled (``cancel_requested`` stored now, the broker asked after the
  commit: ``live.order_manager``), no more entries, reduce-only orders flatten it;
* a closing slice that is flat with no open order gives its cash back to the champion's book
  (audited ``slice_closed``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import MutableMapping

from sqlalchemy.orm import Session

from live.order_manager import cancel_resting_entries
from live.slice_book import Slice, audit, open_orders, retire, set_row
from live.slice_venue import committed
from tradeloop.challengers.slices import MAX_TOTAL_SHARE
from tradeloop.ops import TradingSession
from tradeloop.portfolio import CashFlowKind, Portfolio

log = logging.getLogger(__name__)

__all__ = ["transfer", "watch"]


def watch(db: Session, ts: int, *, session: TradingSession, slices: list[Slice]) -> None:
    """Each funded slice's loss limits on its equity at this close (module rules)."""
    for s in slices:
        trip = s.risk.on_equity(ts, s.equity)
        set_row(db, s, slice_risk_state=json.loads(s.risk.to_json()))
        if trip is None or s.state != "open" or s.retiring:
            continue
        log.warning("session %s: slice %s tripped its loss limit at %d: %s; retired, its slice closes",
                    session.name, s.artifact[:12], ts, trip.message)  # fmt: skip
        audit(db, session.id, "slice_risk_tripped", s, **trip.detail())
        retire(db, session.id, s, {"bar_ts": ts, "why": f"slice {trip.rule}: {trip.message}"[:200]})


def transfer(
    db: Session, ts: int, *, session: TradingSession, slices: MutableMapping[str, Slice], champion: Portfolio
) -> list[Slice]:
    """Module rules for every slice, by artifact; the slices closed at this bar (gone from ``slices``)."""
    closed = []
    for s in [slices[a] for a in sorted(slices)]:
        if s.state == "waiting":
            _fund(db, ts, session=session, s=s, slices=slices, champion=champion)
        elif s.retiring and s.state == "open":
            s.state = "closing"
            set_row(db, s, slice_state="closing")
            audit(db, session.id, "slice_closing", s, ts=ts, why=s.why)
            cancel_resting_entries(db, session.id, reason=f"capital slice closing: {s.why}", capital_slice=s.artifact)
        elif s.state == "closing" and not s.positions() and not open_orders(db, session.id, s):
            champion.add_cash_flow(s.portfolio.cash, reason=CashFlowKind.TRANSFER)
            set_row(db, s, slice_state="closed")
            audit(db, session.id, "slice_closed", s, ts=ts, cash=s.portfolio.cash)
            del slices[s.artifact]
            closed.append(s)
    return closed


def _fund(
    db: Session, ts: int, *, session: TradingSession, s: Slice, slices: MutableMapping[str, Slice], champion: Portfolio
) -> None:
    funded = sum(o.share for o in slices.values() if o.funded)
    whole = champion.equity() + sum(o.portfolio.equity() for o in slices.values() if o.funded)
    amount = s.share * whole
    if funded + s.share > MAX_TOTAL_SHARE + 1e-12:
        why = (f"the funded slices hold {funded:g} of the capital; with this one's {s.share:g} they would pass "
               f"{MAX_TOTAL_SHARE:g}: it waits until one closes")  # fmt: skip
    elif not (amount > 0 and (free := champion.cash - committed(db, session.id, None)) >= amount):
        why = (f"the champion's free cash {free:,.2f} (its cash less what its open buys may spend) does not "
               f"cover its {s.share:g} of the equity ({amount:,.2f})")  # fmt: skip
    else:
        champion.add_cash_flow(-amount, reason=CashFlowKind.TRANSFER)
        s.portfolio, s.state, s.since, s.equity, s.before = Portfolio(cash=amount), "open", ts, amount, amount
        s.why = None
        set_row(db, s, slice_cash=amount, slice_ts=ts, slice_state="open")
        audit(db, session.id, "slice_funded", s, ts=ts, cash=amount, share=s.share)
        return
    s.why = why
    if not s.announced:  # once: the row says waiting from now on (a restart does not repeat it)
        s.announced = True
        set_row(db, s, slice_state="waiting")
        audit(db, session.id, "slice_waiting", s, ts=ts, share=s.share, why=why)
        log.warning("session %s: slice %s waits for its funding: %s", session.name, s.artifact[:12], why)
