"""One trading session as tables: positions with unrealised PnL, orders, fills, round trips,
per-symbol figures, the decision source over time and the candles it traded.

Rules (the live engine's, ``live.orders``): a position's cost basis is its volume-weighted
entry price plus the entry fees it paid, so unrealised PnL is
``quantity * (last_price - entry_price) - entry_fee`` and a closed round trip's PnL is what
its sells brought in minus what its buys cost, fees on both sides included. A round trip
runs from flat to flat. Times are naive UTC datetimes (what Streamlit and plotly show as
dates). Read-only, like every reader of the dashboard.

A session split in capital slices (``live.slices``) has several books: the champion's (the
session's own) and each challenger's slice (``tradeloop.challengers.books``). Positions are
every book's, tagged ``book`` (``champion`` or the challenger's artifact), weighted against the
whole session's equity; round trips run per book (a fill's book is its order's
``capital_slice``), so one book's sell never closes another's buy.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from tradeloop.challengers.books import CHAMPION, session_books
from tradeloop.data import CandleLake, SeriesKey, timeframe_ms
from tradeloop.errors import DataError
from tradeloop.ops import EquityPoint, Fill, OpsStore, Order, Position
from tradeloop.ops.models import ThresholdInForce, TradingSession
from tradeloop.ops.overrides import ONLINE, OPERATOR_REQUESTS
from tradeloop.ops.store import OPEN_STATUSES
from tradeloop.performance.series import to_datetime

FLAT = 1e-12  # a position below this share of what was bought is flat (the engine's own rule is 1e-15 absolute)
SOURCE_WORDS = {"model": "model", "static": "fallback (reduce-only)", ONLINE: "model (adapted threshold)"}


@dataclass(frozen=True, kw_only=True, slots=True)
class SessionTables:
    session: TradingSession
    equity: pl.DataFrame  # ts, time, equity, cash
    positions: pl.DataFrame  # open positions, with unrealised PnL
    open_orders: pl.DataFrame
    orders: pl.DataFrame
    fills: pl.DataFrame  # newest first, with time
    trades: pl.DataFrame  # round trips, oldest first
    symbols: pl.DataFrame  # per-symbol figures
    decisions: pl.DataFrame  # what decided entries, from when

    @property
    def last_equity(self) -> float:
        return float(self.equity["equity"][-1]) if self.equity.height else self.session.cash


def _time(column: str = "ts") -> pl.Expr:
    return pl.from_epoch(pl.col(column), time_unit="ms")


def read_session(store: OpsStore, name: str) -> SessionTables:
    session = store.session(name)
    equity = store.frame(EquityPoint, session.id).sort("ts").with_columns(time=_time())
    fills = store.frame(Fill, session.id).sort("ts", "id").with_columns(time=_time())
    orders = store.frame(Order, session.id).sort("id", descending=True).with_columns(decided=_time("decided_ts"))
    books = {o: c for o, c in orders.select("id", "capital_slice").iter_rows()} if orders.height else {}
    fills = fills.with_columns(
        book=pl.col("order_id").replace_strict(books, default=None, return_dtype=pl.String).fill_null(CHAMPION)
    )
    held = store.frame(Position, session.id)
    last_equity = float(equity["equity"][-1]) if equity.height else session.cash
    positions = open_positions(book_positions(store, session), equity=last_equity)
    trades = round_trips(fills)
    return SessionTables(
        session=session,
        equity=equity,
        positions=positions,
        orders=orders,
        open_orders=orders.filter(pl.col("status").is_in(OPEN_STATUSES)),
        fills=fills.sort("ts", "id", descending=True),
        trades=trades,
        symbols=symbol_figures(trades, fills, held, init_cash=session.init_cash),
        decisions=decision_sources(store.frame(ThresholdInForce, session.id)),
    )


def book_positions(store: OpsStore, session: TradingSession) -> pl.DataFrame:
    """Every book's positions (module rules), as ``positions`` rows with a ``book`` column."""
    with store.transaction() as db:
        books = session_books(db, session)
    rows = [
        {"book": name, "symbol": p.instrument.symbol, "quantity": p.quantity, "entry_price": p.entry_price,
         "entry_fee": p.entry_fee, "entry_ts": p.entry_ts, "last_price": p.last_price, "realized_pnl": p.realized_pnl}
        for name, book in books.items()
        for p in book.positions()
    ]  # fmt: skip
    return pl.DataFrame(rows, schema=BOOK_POSITION_SCHEMA)


BOOK_POSITION_SCHEMA = {
    "book": pl.String,
    "symbol": pl.String,
    "quantity": pl.Float64,
    "entry_price": pl.Float64,
    "entry_fee": pl.Float64,
    "entry_ts": pl.Int64,
    "last_price": pl.Float64,
    "realized_pnl": pl.Float64,
}


def open_positions(positions: pl.DataFrame, *, equity: float) -> pl.DataFrame:
    """Held positions with their market value, unrealised PnL (fees paid included) and weight
    against ``equity`` (the whole session's: every book's positions are given), by book."""
    held = positions.filter(pl.col("quantity") > 0)
    if "book" not in held.columns:
        held = held.with_columns(book=pl.lit(CHAMPION))
    last = pl.coalesce("last_price", "entry_price")
    return held.select(
        "book",
        "symbol",
        "quantity",
        "entry_price",
        last_price=last,
        since=_time("entry_ts"),
        value=pl.col("quantity") * last,
        unrealised_pnl=pl.col("quantity") * (last - pl.col("entry_price")) - pl.col("entry_fee"),
        unrealised_return=(pl.col("quantity") * (last - pl.col("entry_price")) - pl.col("entry_fee"))
        / (pl.col("quantity") * pl.col("entry_price") + pl.col("entry_fee")),
        weight=pl.col("quantity") * last / equity if equity else pl.lit(None, dtype=pl.Float64),
    ).sort("book", "symbol")


TRADE_SCHEMA = {
    "book": pl.String,
    "symbol": pl.String,
    "entry_time": pl.Datetime("ms"),
    "exit_time": pl.Datetime("ms"),
    "quantity": pl.Float64,
    "entry_price": pl.Float64,
    "exit_price": pl.Float64,
    "fees": pl.Float64,
    "pnl": pl.Float64,
    "return": pl.Float64,
    "is_open": pl.Boolean,
}


def round_trips(fills: pl.DataFrame) -> pl.DataFrame:
    """Long round trips from flat to flat, per book and symbol, from fills (``ts``, ``symbol``,
    ``side``, ``quantity``, ``price``, ``fee``; ``book``: whose, module rules, default the
    champion's). An unfinished one is ``is_open`` with no exit and no PnL."""
    rows: list[dict] = []
    if "book" not in fills.columns:
        fills = fills.with_columns(book=pl.lit(CHAMPION))
    for (book, symbol), part in fills.sort("ts", "id" if "id" in fills.columns else "ts").group_by(
        "book", "symbol", maintain_order=True
    ):
        trip: dict | None = None
        for ts, side, qty, price, fee in part.select("ts", "side", "quantity", "price", "fee").iter_rows():
            if side == "buy":
                if trip is None:
                    trip = {
                        "book": book,
                        "symbol": symbol,
                        "entry_ts": ts,
                        "held": 0.0,
                        "bought": 0.0,
                        "cost": 0.0,
                        "sold": 0.0,
                        "proceeds": 0.0,
                        "fees": 0.0,
                    }
                trip["held"] += qty
                trip["bought"] += qty
                trip["cost"] += qty * price
            elif trip is not None:  # a sell with nothing held cannot happen long-only; ignore it
                trip["held"] -= qty
                trip["sold"] += qty
                trip["proceeds"] += qty * price
            if trip is None:
                continue
            trip["fees"] += fee
            if side == "sell" and trip["held"] <= FLAT * trip["bought"]:
                rows.append(_trip_row(trip, exit_ts=ts))
                trip = None
        if trip is not None:
            rows.append(_trip_row(trip, exit_ts=None))
    return pl.DataFrame(rows, schema=TRADE_SCHEMA).sort("entry_time")


def _trip_row(trip: dict, *, exit_ts: int | None) -> dict:
    closed = exit_ts is not None
    pnl = trip["proceeds"] - trip["cost"] - trip["fees"] if closed else None
    as_time = pl.Series([trip["entry_ts"], exit_ts], dtype=pl.Int64).cast(pl.Datetime("ms")).to_list()
    return {
        "book": trip["book"],
        "symbol": trip["symbol"],
        "entry_time": as_time[0],
        "exit_time": as_time[1],
        "quantity": trip["bought"],
        "entry_price": trip["cost"] / trip["bought"],
        "exit_price": trip["proceeds"] / trip["sold"] if closed and trip["sold"] else None,
        "fees": trip["fees"],
        "pnl": pnl,
        "return": pnl / trip["cost"] if closed and trip["cost"] else None,
        "is_open": not closed,
    }


SYMBOL_SCHEMA = {
    "symbol": pl.String,
    "trades": pl.Int64,
    "open": pl.Int64,
    "win_rate": pl.Float64,
    "realised_pnl": pl.Float64,
    "unrealised_pnl": pl.Float64,
    "total_pnl": pl.Float64,
    "contribution": pl.Float64,
    "fees": pl.Float64,
    "volume": pl.Float64,
}


def symbol_figures(
    trades: pl.DataFrame, fills: pl.DataFrame, positions: pl.DataFrame, *, init_cash: float
) -> pl.DataFrame:
    """Per symbol: closed and open round trips, win rate, realised PnL (the positions' own
    account), unrealised PnL, their sum as a share of the initial cash, fees and traded volume."""
    symbols = sorted(set(fills["symbol"].to_list()) | set(positions["symbol"].to_list()))
    rows = []
    for symbol in symbols:
        mine = trades.filter(pl.col("symbol") == symbol)
        closed = mine.filter(~pl.col("is_open"))
        pos = positions.filter(pl.col("symbol") == symbol)
        traded = fills.filter(pl.col("symbol") == symbol)
        realised = float(pos["realized_pnl"].sum()) if pos.height else 0.0
        held = pos.filter(pl.col("quantity") > 0)
        unrealised = float(open_positions(held, equity=1.0)["unrealised_pnl"].sum()) if held.height else 0.0
        rows.append(
            {
                "symbol": symbol,
                "trades": closed.height,
                "open": mine.height - closed.height,
                "win_rate": float((closed["pnl"] > 0).mean()) if closed.height else None,
                "realised_pnl": realised,
                "unrealised_pnl": unrealised,
                "total_pnl": realised + unrealised,
                "contribution": (realised + unrealised) / init_cash,
                "fees": float(traded["fee"].sum()),
                "volume": float((traded["quantity"] * traded["price"]).sum()),
            }
        )
    return pl.DataFrame(rows, schema=SYMBOL_SCHEMA)


DECISION_SCHEMA = {
    "since": pl.Datetime("ms"),
    "until": pl.Datetime("ms"),
    "source": pl.String,
    "model": pl.String,
    "threshold": pl.Float64,
    "reason": pl.String,
    "clock": pl.String,
}


def decision_sources(thresholds: pl.DataFrame) -> pl.DataFrame:
    """What decided entries, from when until when (``until`` null: still in force): the model's
    threshold or the fallback (no model: reduce-only). Times are the bar it decided from
    (``clock`` "bar"); rows recorded before the engine kept the bar fall back to the engine's
    wall clock when it switched (``clock`` "engine")."""
    if not thresholds.height:
        return pl.DataFrame(schema=DECISION_SCHEMA)
    frame = thresholds.sort("id")
    wall = to_datetime(frame, "since")
    has_bar = pl.col("bar_ts").is_not_null() if "bar_ts" in frame.columns else pl.lit(False)
    bar = pl.from_epoch(pl.col("bar_ts"), time_unit="ms") if "bar_ts" in frame.columns else wall
    frame = frame.with_columns(
        since=pl.when(has_bar).then(bar).otherwise(wall),
        clock=pl.when(has_bar).then(pl.lit("bar")).otherwise(pl.lit("engine")),
    )
    return frame.select(
        "since",
        until=pl.col("since").shift(-1),
        source=pl.col("source").replace_strict(SOURCE_WORDS, default=pl.col("source")),
        model=pl.col("artifact").str.slice(0, 12),
        threshold="threshold",
        reason="reason",
        clock="clock",
    ).cast(DECISION_SCHEMA)


def in_force_schedule(store: OpsStore, session_id: int) -> tuple[tuple[int, str | None], ...] | None:
    """What decided entries from which bar, as the engine recorded it: (bar, artifact or None
    for the reduce-only fallback) in time order; None when a row predates the bar column
    (migration 0004)."""
    rows = [r for r in store.thresholds(session_id) if r.source not in OPERATOR_REQUESTS]  # not an operator's requests
    if not rows or any(r.bar_ts is None for r in rows):
        return None
    return tuple((int(r.bar_ts), r.artifact if r.source in ("model", ONLINE) else None) for r in rows)


def decision_periods(decisions: pl.DataFrame) -> pl.DataFrame:
    """``decision_sources`` with consecutive records of the same source, model and threshold
    (an engine resuming re-records what is in force) merged into one period."""
    if not decisions.height:
        return decisions
    key = pl.struct("source", pl.col("model").fill_null(""), pl.col("threshold").fill_null(-1.0))
    return (
        decisions.with_columns(period=(key != key.shift(1)).fill_null(True).cum_sum())
        .group_by("period", maintain_order=True)
        .agg(
            pl.col("since").first(),
            pl.col("until").last(),
            pl.col("source", "model", "threshold", "reason", "clock").first(),
        )
        .drop("period")
        .cast(DECISION_SCHEMA)
    )


def session_candles(
    lake: CandleLake, session: TradingSession, *, start: int, end: int, before_bars: int = 10
) -> pl.DataFrame:
    """The lake's candles of the session's symbols from ``before_bars`` before ``start`` to
    ``end`` (ms, inclusive), with ``symbol``; empty where the lake holds none."""
    frames = []
    pad = before_bars * timeframe_ms(session.timeframe)
    for symbol in session.symbols:
        key = SeriesKey(session.exchange, symbol, session.timeframe)
        if not lake.exists(key):
            continue
        try:
            frame = lake.read(key, start=start - pad, end=end, on_invalid=lambda *_: None)
        except DataError:  # a damaged file: the data health page names it
            continue
        frames.append(frame.select("ts", "open", "high", "low", "close", "volume").with_columns(symbol=pl.lit(symbol)))
    return (
        pl.concat(frames)
        if frames
        else pl.DataFrame(
            schema={
                "ts": pl.Int64,
                "open": pl.Float64,
                "high": pl.Float64,
                "low": pl.Float64,
                "close": pl.Float64,
                "volume": pl.Float64,
                "symbol": pl.String,
            }
        )
    )
