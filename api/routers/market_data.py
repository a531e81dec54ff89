"""Market data: the lake's series, their coverage and their candles (``settings.lake_dir``).

Series, coverage and gaps are what ``tradeloop data status`` reports (``LakeSQL.status``:
rows, first and last candle, gaps, stored rows left out per rule, unreadable files); candles
are what every reader gets (``CandleLake.read``: bad stored rows left out), oldest first.
A series is named by exchange (a ccxt id), symbol (``BTC-USDT`` or ``BTC/USDT``) and
timeframe (``4h``); one with no stored candles is a 404 problem naming it.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from api.context import ApiContext
from api.deps import Context, Viewer
from api.timequery import Since, Until, window
from tradeloop.data import CandleLake, SeriesKey
from tradeloop.data.lake import SeriesStatus
from tradeloop.data.sql import LakeSQL
from tradeloop.errors import NotFoundError

router = APIRouter(prefix="/data", tags=["market data"])

MAX_CANDLES = 5000
Exchange = Annotated[str, Query(min_length=1, max_length=64, description="a ccxt exchange id", examples=["coinbase"])]
Symbol = Annotated[
    str, Query(min_length=1, max_length=64, description="BASE-QUOTE or BASE/QUOTE", examples=["BTC-USD"])
]
Timeframe = Annotated[str, Query(min_length=1, max_length=16, description="a ccxt timeframe", examples=["4h"])]


class SeriesOut(BaseModel):
    exchange: str = Field(examples=["coinbase"])
    symbol: str = Field(description="the lake's name: BASE-QUOTE", examples=["BTC-USD"])
    timeframe: str = Field(examples=["4h"])
    first_ts: int | None = Field(default=None, description="open time (ms) of the first good candle")
    last_ts: int | None = Field(default=None, description="open time (ms) of the last good candle")
    rows: int = Field(description="good candles stored")


class SeriesPage(BaseModel):
    items: list[SeriesOut] = Field(description="ordered by exchange:symbol:timeframe")
    next_after: str | None = Field(default=None, description="pass as after for the next page; None: the last page")


class GapOut(BaseModel):
    start: int = Field(description="open time (ms) of the first missing candle")
    end: int = Field(description="open time (ms) of the last missing candle")
    missing: int


class UnreadableOut(BaseModel):
    file: str = Field(description="the damaged file's name in the series folder")
    reason: str


class CoverageOut(SeriesOut):
    missing: int = Field(description="candles missing between the first and the last")
    coverage: float = Field(description="rows / (rows + missing)")
    gap_count: int
    gaps: list[GapOut] = Field(description="the first gaps (at most gap_limit), oldest first")
    invalid: dict[str, int] = Field(description="stored rows readers leave out, per broken rule")
    unreadable: list[UnreadableOut] = Field(description="stored files that cannot be read")


class Candle(BaseModel):
    ts: int = Field(description="open time, ms (UTC)")
    open: float
    high: float
    low: float
    close: float
    volume: float


class CandlePage(BaseModel):
    exchange: str
    symbol: str
    timeframe: str
    candles: list[Candle] = Field(description="oldest first")
    next_since: int | None = Field(default=None, description="pass as since for the next page; None: the last page")


def _lake(ctx: ApiContext) -> CandleLake:
    return CandleLake(ctx.settings.lake_dir, quarantine_root=ctx.settings.quarantine_dir)


def _stored(lake: CandleLake, exchange: str, symbol: str, timeframe: str) -> SeriesKey:
    key = SeriesKey(exchange, symbol, timeframe)  # a malformed name: a 422 naming the field
    if not lake.exists(key):
        raise NotFoundError(
            f"no candles stored for {key.label} (exchange={exchange!r}, symbol={symbol!r}, timeframe={timeframe!r}); "
            "GET /data/series lists the stored series"
        )
    return key


def _series(key: SeriesKey, status: SeriesStatus) -> dict:
    return {
        "exchange": key.exchange, "symbol": key.symbol, "timeframe": key.timeframe,
        "first_ts": status.first_ts, "last_ts": status.last_ts, "rows": status.rows,
    }  # fmt: skip


def _status(lake: CandleLake, keys: list[SeriesKey]) -> dict[SeriesKey, SeriesStatus]:
    """Coverage of ``keys`` as ``tradeloop data status`` computes it (the lake's clock for
    rows dated in the future; damaged files listed, not raised)."""
    if not keys:
        return {}
    with LakeSQL(lake, keys=keys, now_ms=lake.clock(), strict=False) as sql:
        return sql.status()


@router.get("/series", response_model=SeriesPage, summary="The stored candle series with their first and last candle")
def list_series(
    principal: Viewer,
    ctx: Context,
    limit: Annotated[int, Query(ge=1, le=500, description="series per page")] = 100,
    after: Annotated[
        str | None, Query(max_length=200, description="series after this exchange:symbol:timeframe label")
    ] = None,
) -> SeriesPage:
    lake = _lake(ctx)
    keys = sorted((k for k in lake.list_series() if after is None or k.label > after), key=lambda k: k.label)
    page = keys[:limit]
    statuses = _status(lake, page)
    return SeriesPage(
        items=[SeriesOut(**_series(k, statuses[k])) for k in page],
        next_after=page[-1].label if len(keys) > limit else None,
    )


@router.get("/coverage", response_model=CoverageOut, summary="A series' coverage and gaps, as `tradeloop data status`")
def coverage(
    exchange: Exchange,
    symbol: Symbol,
    timeframe: Timeframe,
    principal: Viewer,
    ctx: Context,
    gap_limit: Annotated[int, Query(ge=0, le=5000, description="list at most this many gaps")] = 100,
) -> CoverageOut:
    lake = _lake(ctx)
    key = _stored(lake, exchange, symbol, timeframe)
    status = _status(lake, [key])[key]
    return CoverageOut(
        **_series(key, status),
        missing=status.missing,
        coverage=status.coverage,
        gap_count=len(status.gaps),
        gaps=[GapOut(start=g.start, end=g.end, missing=g.missing) for g in status.gaps[:gap_limit]],
        invalid=status.invalid,
        unreadable=[UnreadableOut(file=path.name, reason=why) for path, why in status.unreadable],
    )


@router.get(
    "/candles",
    response_model=CandlePage,
    summary=f"A series' candles in a time window, oldest first, at most {MAX_CANDLES} a page",
)
def candles(
    exchange: Exchange,
    symbol: Symbol,
    timeframe: Timeframe,
    principal: Viewer,
    ctx: Context,
    since: Since = None,
    until: Until = None,
    limit: Annotated[int, Query(ge=1, le=MAX_CANDLES, description="candles per page")] = 1000,
) -> CandlePage:
    lo, hi = window(since, until)
    lake = _lake(ctx)
    key = _stored(lake, exchange, symbol, timeframe)
    frame = lake.read(key, start=lo, end=hi, on_invalid=lambda *_: None).head(limit + 1)
    more = frame.height > limit
    rows = frame.head(limit).select("ts", "open", "high", "low", "close", "volume").to_dicts()
    return CandlePage(
        exchange=key.exchange,
        symbol=key.symbol,
        timeframe=key.timeframe,
        candles=[Candle(**r) for r in rows],
        next_since=int(rows[-1]["ts"]) + 1 if more else None,
    )
