"""Venues: each exchange's health, and the cross-venue arbitrage opportunities detected.

Both are read from the operational database, where the process that owns the exchange
connections writes them (``live.venue_monitor``: a health snapshot per venue every
``probe_s``; ``live.arbitrage``: every opportunity from its start to its end); the API never
talks to an exchange. A health snapshot carries its age: one much older than the monitor's
interval means that process stopped reporting, whatever its score says.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from api.deps import Context, Viewer
from api.paging import IdPage, Paged, paged
from tradeloop.ops.market_models import ArbitrageOpportunityRow
from tradeloop.ops.market_store import MarketStore

router = APIRouter(tags=["venues"])


class VenueHealthOut(BaseModel):
    venue: str = Field(examples=["binance"])
    score: float = Field(description="0..1: the product of the factors (tradeloop.observability.venues rule 3)")
    status: str | None = Field(description="the venue's own status endpoint: ok, maintenance, ...; null: not asked")
    measured_at_ms: int = Field(description="when the snapshot was taken (epoch ms)")
    age_s: float = Field(description="seconds since then: a large age means the monitor stopped reporting")
    figures: dict[str, Any] = Field(
        description="calls, errors by class, error_rate, timeout_rate, rate_limit_hits, p50_s/p95_s/p99_s, "
        "ws_reconnects, stale_s, clock_skew_s, status and the score's factors"
    )


class OpportunityOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    symbol: str = Field(examples=["BTC/USDT"])
    buy_venue: str = Field(description="bought here at the best ask")
    sell_venue: str = Field(description="sold here at the best bid")
    start_ms: int
    end_ms: int | None = Field(description="null: still open")
    buy_price: float
    sell_price: float
    size: float = Field(description="base amount available at both prices (the thinner side)")
    gross_bps: float
    net_bps: float = Field(description="after both legs' taker fees (and the withdrawal when transfer)")
    net_profit: float = Field(description="quote currency, at size")
    best_net_bps: float
    transfer: bool


@router.get("/venues/health", response_model=list[VenueHealthOut], summary="Every venue's latest health snapshot")
def venue_health(principal: Viewer, ctx: Context) -> list[VenueHealthOut]:
    now = ctx.now()
    out = []
    for row in MarketStore(ctx.store).health():
        at = row.measured_at if row.measured_at.tzinfo else row.measured_at.replace(tzinfo=now.tzinfo)  # SQLite
        out.append(
            VenueHealthOut(
                venue=row.venue,
                score=row.score,
                status=row.status,
                figures=row.figures,
                measured_at_ms=int(at.timestamp() * 1000),
                age_s=max(0.0, (now - at).total_seconds()),
            )  # fmt: skip
        )
    return out


@router.get(
    "/arbitrage/opportunities",
    response_model=Paged[OpportunityOut],
    summary="Cross-venue arbitrage opportunities, by id (time: start_ms)",
)
def opportunities(
    principal: Viewer,
    ctx: Context,
    page: IdPage,
    symbol: Annotated[str | None, Query(max_length=50, description="only this symbol", examples=["BTC/USDT"])] = None,
    venue: Annotated[str | None, Query(max_length=50, description="only with this venue on a leg")] = None,
    open_only: Annotated[bool, Query(description="only those still open")] = False,
) -> Paged[OpportunityOut]:
    rows = MarketStore(ctx.store).opportunities(page, symbol=symbol, venue=venue, open_only=open_only)
    return paged(rows, page, OpportunityOut.model_validate, _id)


def _id(row: ArbitrageOpportunityRow) -> int:
    return row.id
