"""Reads and writes of the market-wide tables (``tradeloop.ops.market_models``): venue health
snapshots and arbitrage opportunities.

Rules:

1. **Health** is one row per venue, replaced by each snapshot (``save_health``); readers get
   every venue's latest with its ``measured_at``, and judge staleness themselves.
2. **Opportunities** are keyed by (symbol, buy venue, sell venue, start): recording an event
   of one twice changes nothing more (the bus delivers at least once), and an opened,
   updated or closed event of one already stored updates its row.
3. **A restart closes what it left open** (:meth:`MarketStore.close_open`): the scanner's state
   dies with the process, so at its start the service closes every row of its symbols and
   venues still open, ``end_ms`` the last time it was seen (its ``updated_at``, never before
   ``start_ms``). A spread still open after the restart is a new opportunity with a new row.
4. **Pages** follow ``tradeloop.ops.session_reads``: at most ``limit`` rows after the cursor
   (the row id), oldest first; time bounds apply to ``start_ms``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from sqlalchemy import or_, select

from tradeloop.arbitrage import ArbitrageEvent
from tradeloop.ops.market_models import ArbitrageOpportunityRow, VenueHealthRow
from tradeloop.ops.session_reads import Page
from tradeloop.ops.store import OpsStore

if TYPE_CHECKING:  # the API reads without importing ccxt
    from tradeloop.observability.venues import VenueSnapshot


class MarketStore:
    """The market-wide tables of one operational database (cheap to construct)."""

    def __init__(self, store: OpsStore):
        self.store = store

    def save_health(self, snapshots: Iterable[VenueSnapshot]) -> int:
        """Replace each snapshot's venue row (rule 1); how many were written."""
        n = 0
        with self.store.transaction(immediate=True) as db:
            for snap in snapshots:
                row = db.get(VenueHealthRow, snap.venue) or VenueHealthRow(venue=snap.venue)
                row.score, row.status, row.figures = snap.score, snap.status, snap.figures()
                row.measured_at = datetime.fromtimestamp(snap.at, tz=UTC)
                db.add(row)
                n += 1
        return n

    def health(self) -> list[VenueHealthRow]:
        """Every venue's latest snapshot, by venue."""
        with self.store.transaction() as db:
            return list(db.scalars(select(VenueHealthRow).order_by(VenueHealthRow.venue)))

    def record(self, event: ArbitrageEvent) -> int:
        """Store an opportunity's event (rule 2); the row's id."""
        o = event.opportunity
        with self.store.transaction(immediate=True) as db:
            row = db.scalar(
                select(ArbitrageOpportunityRow).where(
                    ArbitrageOpportunityRow.symbol == o.symbol,
                    ArbitrageOpportunityRow.buy_venue == o.buy_venue,
                    ArbitrageOpportunityRow.sell_venue == o.sell_venue,
                    ArbitrageOpportunityRow.start_ms == o.start_ts,
                )
            )
            if row is None:
                row = ArbitrageOpportunityRow(
                    symbol=o.symbol, buy_venue=o.buy_venue, sell_venue=o.sell_venue, start_ms=o.start_ts
                )
            elif row.end_ms is not None and o.end_ts is None:
                return row.id  # a late repeat of an earlier event of a closed one
            row.end_ms, row.buy_price, row.sell_price, row.size = o.end_ts, o.buy_price, o.sell_price, o.size
            row.gross_bps, row.net_bps, row.net_profit = o.gross_bps, o.net_bps, o.net_profit
            best = o.best_net_bps if row.best_net_bps is None else max(o.best_net_bps, row.best_net_bps)
            row.best_net_bps, row.transfer = best, o.transfer
            db.add(row)
            db.flush()
            return row.id

    def close_open(self, *, symbols: Iterable[str] | None, venues: Iterable[str]) -> int:
        """Close the rows of ``symbols`` (None: any) between ``venues`` left open by an earlier
        run (rule 3); how many."""
        venues = list(venues)
        query = select(ArbitrageOpportunityRow).where(
            ArbitrageOpportunityRow.end_ms.is_(None),
            ArbitrageOpportunityRow.buy_venue.in_(venues),
            ArbitrageOpportunityRow.sell_venue.in_(venues),
        )
        if symbols is not None:
            query = query.where(ArbitrageOpportunityRow.symbol.in_(list(symbols)))
        with self.store.transaction(immediate=True) as db:
            rows = db.scalars(query).all()
            for row in rows:
                seen = row.updated_at.replace(tzinfo=row.updated_at.tzinfo or UTC) if row.updated_at else None
                row.end_ms = max(row.start_ms, int(seen.timestamp() * 1000) if seen else row.start_ms)
            return len(rows)

    def opportunities(
        self, page: Page, *, symbol: str | None = None, venue: str | None = None, open_only: bool = False
    ) -> Sequence[ArbitrageOpportunityRow]:
        """A page of opportunities by id (rule 3): of ``symbol``, with ``venue`` on either leg."""
        query = select(ArbitrageOpportunityRow).order_by(ArbitrageOpportunityRow.id).limit(page.limit)
        if page.after is not None:
            query = query.where(ArbitrageOpportunityRow.id > page.after)
        if page.since_ms is not None:
            query = query.where(ArbitrageOpportunityRow.start_ms >= page.since_ms)
        if page.until_ms is not None:
            query = query.where(ArbitrageOpportunityRow.start_ms <= page.until_ms)
        if symbol is not None:
            query = query.where(ArbitrageOpportunityRow.symbol == symbol)
        if venue is not None:
            query = query.where(
                or_(ArbitrageOpportunityRow.buy_venue == venue, ArbitrageOpportunityRow.sell_venue == venue)
            )
        if open_only:
            query = query.where(ArbitrageOpportunityRow.end_ms.is_(None))
        with self.store.transaction() as db:
            return list(db.scalars(query))
