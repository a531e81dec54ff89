"""Run-time reconciliation of a perpetuals session's positions with the venue's (``positionRisk``).

A margin account's balances are margin (wallet plus unrealised P&L), not holdings, so
:class:`live.reconcile.VenueCheck` compares its positions instead. Rules:

* Each symbol of the session: its signed position in the session's book (short < 0) against
  the venue's, read by :meth:`PositionAccount.positions` (``/fapi/v2|v3/positionRisk``). A
  hedge-mode account reports a long and a short leg per symbol: they are netted, since the
  net is the exposure (and a one-way order of the session moves it).
* Only when no order of the session is in flight (an order in flight moves the venue's
  position before the session's book).
* A *baseline* per symbol is what the account holds apart from the session (a position opened
  by hand before the session started, another bot's): recorded at the first comparison, in
  ``sessions.venue_baseline`` by session symbol (audit row ``position_baseline``), and again
  at the first comparison after ``tradeloop live ack`` (the ack clears it). One that is not
  zero is logged: one-way, the venue nets it with the session's position (a reduce-only exit
  of the session can be cut short by an opposite one).
* A difference between the venue's position and baseline + session beyond the market's amount
  step is a drift (a liquidation, a close on the website, a fill the engine missed): an audit
  row ``position_drift`` with the numbers and ``sessions.needs_ack``, so the whole session is
  reduce-only until ``tradeloop live ack NAME``. The reason tells the operator to make the
  venue's position the session's again (or stop the session) first: an ack alone takes the
  venue's positions as they are then as the new baseline, while the session's book still holds
  what it held (a reduce-only exit of a position the venue closed is refused, bar after bar).
  A session already waiting for an ack for another reason gets the drift added to the
  reason its operator reads (one ack clears both), once.
* A venue that cannot be asked raises ``VenueUnreachableError``: the caller audits
  ``venue_check_failed`` and asks again at the next check.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from live.brokers.base import MarketAssets
from live.orders import orders_in_flight
from tradeloop.ops import OpsStore

if TYPE_CHECKING:
    from live.brokers.perps import PerpPosition

log = logging.getLogger(__name__)
EVENT, NOTE = "position_drift", "position drift"


@runtime_checkable
class PositionAccount(Protocol):
    """A margin account that reports its positions (``live.brokers.perps.PerpsBroker``)."""

    def unified(self, symbol: str) -> str: ...

    async def positions(self, symbols: Sequence[str] | None = None) -> list[PerpPosition]: ...

    async def assets(self, symbol: str) -> MarketAssets: ...


@dataclass(frozen=True, kw_only=True, slots=True)
class PositionDrift:
    """One symbol whose venue position is not the session's plus the account's own."""

    symbol: str
    venue: float  # signed, legs netted
    session: float  # signed, the session's book
    baseline: float  # the account's own position, recorded at the first comparison
    tolerance: float  # the market's amount step

    @property
    def off_by(self) -> float:
        return self.venue - self.baseline - self.session

    def describe(self) -> str:
        return (
            f"{self.symbol}: venue {self.venue:.10g}, session {self.session:.10g}"
            + (f" + the account's own {self.baseline:.10g}" if self.baseline else "")
            + f", off by {self.off_by:+.10g}"
        )

    def detail(self) -> dict[str, float]:
        return {
            "venue": self.venue,
            "session": self.session,
            "baseline": self.baseline,
            "off_by": self.off_by,
            "tolerance": self.tolerance,
        }


async def compare_positions(
    venue: PositionAccount,
    store: OpsStore,
    session_id: int,
    *,
    symbols: Sequence[str],
    positions: dict[str, float],
) -> list[PositionDrift]:
    """Compare the session's ``positions`` (by session symbol) with the venue's (module rules);
    returns the drifts found (none while an order is in flight or when the baseline is recorded).

    Raises
    ------
    VenueUnreachableError
        The venue's positions or markets could not be read.
    """
    if orders_in_flight(store, session_id):
        return []
    steps = {symbol: (await venue.assets(symbol)).amount_step for symbol in symbols}
    netted: defaultdict[str, float] = defaultdict(float)
    for reported in await venue.positions(list(symbols)):
        netted[reported.instrument.symbol] += reported.quantity
    held = {symbol: netted.get(venue.unified(symbol), 0.0) for symbol in symbols}
    with store.transaction() as db:
        row = OpsStore.session_row(db, session_id, for_update=True)
        baseline = row.venue_baseline
        if baseline is None:
            row.venue_baseline = {s: held[s] - positions.get(s, 0.0) for s in symbols}
            OpsStore.audit(db, "position_baseline", session_id=session_id, detail=dict(row.venue_baseline))
            for s, own in row.venue_baseline.items():
                if abs(own) > steps[s]:
                    log.warning(
                        "session %d: the account holds %.10g %s of its own (the baseline); one-way, the venue nets "
                        "it with the session's position, so a reduce-only exit can be cut short by it",
                        session_id, own, s,
                    )  # fmt: skip
            return []
        drifts = [
            PositionDrift(
                symbol=s,
                venue=held[s],
                session=positions.get(s, 0.0),
                baseline=float(baseline.get(s, 0.0)),
                tolerance=steps[s],
            )
            for s in symbols
        ]
        drifts = [d for d in drifts if abs(d.off_by) > d.tolerance]
        if not drifts:
            return []
        reason = (
            f"{NOTE}: "
            + "; ".join(d.describe() for d in drifts)
            + f". Make the venue's position the session's (or `tradeloop live stop {row.name}`), "
            + f"then `tradeloop live ack {row.name}`"
        )
        detail = {d.symbol: d.detail() for d in drifts}
        if OpsStore.require_ack(db, session_id, reason, event=EVENT, detail=detail):
            log.error("session %d: %s; reduce-only until `tradeloop live ack`", session_id, reason)
        elif NOTE not in (row.needs_ack or ""):  # waits for an ack for another reason: one ack clears both
            note = f"; and {NOTE} on {', '.join(d.symbol for d in drifts)} (audit log)"
            row.needs_ack = f"{(row.needs_ack or '')[: 300 - len(note)]}{note}"
            OpsStore.audit(db, EVENT, session_id=session_id, detail=detail)
            log.error("session %d: %s; added to the pending ack", session_id, reason)
    return drifts
