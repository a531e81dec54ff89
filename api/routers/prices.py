"""The latest price of an instrument (``GET /data/last``), from the latest-price cache the
market-data service and the engines write on the bus (``tradeloop.bus``: ``<prefix>:prices``,
field ``<venue>:<symbol>``), or, when the cache has none (no Redis, no process publishing that
instrument), from the close of the lake's newest candle of it (live candles reach the lake
within a minute). The answer says which it is and the bar the price closed."""

from __future__ import annotations

import json
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from api.deps import Context, Viewer
from api.routers.market_data import Exchange, Symbol
from tradeloop.bus import PRICES, price_key, redis_client, stream_key
from tradeloop.data import CandleLake, SeriesKey
from tradeloop.data.schema import timeframe_ms
from tradeloop.errors import NotFoundError

router = APIRouter(prefix="/data", tags=["market data"])


class LastPrice(BaseModel):
    exchange: str = Field(examples=["binance"])
    symbol: str = Field(description="the lake's name: BASE-QUOTE", examples=["BTC-USDT"])
    price: float = Field(description="the close of the newest bar seen")
    bar_ts: int = Field(description="that bar's open time (ms, UTC)")
    source: Literal["cache", "lake"] = Field(description="cache: the bus's latest-price cache; lake: its last candle")
    timeframe: str | None = Field(default=None, description="the lake series read (source lake)")


async def _cached(request: Request, ctx, field: str) -> tuple[float, int] | None:
    url = ctx.settings.redis_url
    if not url:
        return None
    client = getattr(request.app.state, "prices_client", None)
    if client is None:
        client = request.app.state.prices_client = redis_client(url)
    raw = await client.hget(stream_key(ctx.settings.redis_prefix, PRICES), field)
    if raw is None:
        return None
    price, ts = json.loads(raw)
    return float(price), int(ts)


@router.get("/last", response_model=LastPrice, summary="An instrument's latest price: the cache's, else the lake's")
async def last_price(
    request: Request,
    exchange: Exchange,
    symbol: Symbol,
    principal: Viewer,
    ctx: Context,
    timeframe: Annotated[
        str | None, Query(max_length=16, description="the lake series to fall back on (default: its finest)")
    ] = None,
) -> LastPrice:
    name = SeriesKey(exchange, symbol, timeframe or "1m").symbol  # a malformed name: a 422 naming it
    cached = await _cached(request, ctx, price_key(exchange, name))
    if cached is not None:
        return LastPrice(exchange=exchange, symbol=name, price=cached[0], bar_ts=cached[1], source="cache")
    lake = CandleLake(ctx.settings.lake_dir, quarantine_root=ctx.settings.quarantine_dir)
    stored = [k for k in lake.list_series() if k.exchange == exchange and k.symbol == name]
    if timeframe is not None:
        stored = [k for k in stored if k.timeframe == timeframe]
    if not stored:
        raise NotFoundError(
            f"no price for {exchange} {name}: nothing publishes it on the bus and the lake has no candle of it; "
            "GET /data/series lists the stored series"
        )
    key = min(stored, key=lambda k: timeframe_ms(k.timeframe))
    last = lake.read(key).tail(1)
    return LastPrice(
        exchange=exchange, symbol=name, price=float(last["close"][0]), bar_ts=int(last["ts"][0]), source="lake",
        timeframe=key.timeframe,
    )  # fmt: skip
