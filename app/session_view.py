"""One session on the live page: its figures, charts and tables (read on every refresh)."""

from __future__ import annotations

from datetime import UTC, datetime

import formats as fmt
import polars as pl
import sources
import streamlit as st
from charts import decision_figure, steady_axes
from session_data import SessionTables, decision_periods

from tradeloop.arbitrage import LegFill, balances
from tradeloop.cli.common import fmt_ts
from tradeloop.data import SeriesKey
from tradeloop.ops.status import IN_SAMPLE_WARNING, STALE_AFTER_S, is_arbitrage
from tradeloop.performance.plots import candles_figure, equity_figure
from tradeloop.trading import OrderSide

POSITIONS = {
    "book": fmt.text("book"),
    "symbol": fmt.text("symbol"),
    "quantity": fmt.amount("quantity"),
    "entry_price": fmt.price("entry price"),
    "last_price": fmt.price("last price"),
    "since": fmt.when("since"),
    "value": fmt.money("value"),
    "unrealised_pnl": fmt.money("unrealised PnL", "quantity x (last - entry price) - entry fees"),
    "unrealised_return": fmt.percent("unrealised return"),
    "weight": fmt.percent("weight", "value / equity"),
}
ORDERS = {
    "decided": fmt.when("decided (bar)"),
    "symbol": fmt.text("symbol"),
    "side": fmt.text("side"),
    "intent": fmt.text("intent"),
    "quantity": fmt.amount("quantity"),
    "quote_amount": fmt.money("quote amount"),
    "status": fmt.text("status"),
    "filled_qty": fmt.amount("filled"),
    "avg_price": fmt.price("avg price"),
    "client_order_id": fmt.text("client order id"),
}
SYMBOLS = {
    "symbol": fmt.text("symbol"),
    "trades": fmt.count("closed trades"),
    "open": fmt.count("open"),
    "win_rate": fmt.percent("win rate"),
    "realised_pnl": fmt.money("realised PnL"),
    "unrealised_pnl": fmt.money("unrealised PnL"),
    "total_pnl": fmt.money("total PnL"),
    "contribution": fmt.percent("contribution", "total PnL / initial cash"),
    "fees": fmt.money("fees"),
    "volume": fmt.money("traded volume"),
}
DECISIONS = {
    "since": fmt.text("in force since (UTC)", width="medium"),
    "until": fmt.text("until", width="medium"),
    "source": fmt.text("source"),
    "model": fmt.text("model"),
    "threshold": fmt.C.NumberColumn("threshold", format="%.3f"),
    "reason": fmt.text("reason", width="large"),
}


def status_notice(row: dict, name: str) -> None:
    """What the status means for an operator, when it needs saying."""
    if row["status"] == "stale":
        beat = row["heartbeat_s"]
        age = "no heartbeat recorded" if beat is None else f"no heartbeat for {beat / 60:,.0f} min"
        st.error(
            f"Session {name!r} is stale: {age} (the limit is {STALE_AFTER_S / 60:.0f} min), so no engine is "
            f"trading it. `tradeloop live run --name {name}` resumes it.",
            icon=":material/heart_broken:",
        )
    elif row["status"] == "paused":
        st.info(f"Session {name!r} is paused: `tradeloop live resume {name}` lets it trade again.")


def caught_up_notice(row: dict, session) -> None:
    """A running replay that has processed the lake's newest candle waits for the next one:
    say so, or its flat equity reads as a stuck engine."""
    if row["status"] != "running" or session.last_bar_ts is None:
        return
    lake = sources.lake()
    newest = [lake.last_ts(SeriesKey(session.exchange, symbol, session.timeframe)) for symbol in session.symbols]
    newest = [ts for ts in newest if ts is not None]
    if newest and session.last_bar_ts == max(newest):  # an exchange feed runs ahead of the lake: never equal
        st.info(
            f"Session {session.name!r} has caught up: it processed the lake's newest candle "
            f"({fmt_ts(session.last_bar_ts)} UTC) and waits for the next one. New candles reach the lake with "
            "`tradeloop data ingest` (or a scheduled ingest); the engine trades each as it arrives.",
            icon=":material/hourglass_empty:",
        )


def show(store, name: str, row: dict) -> None:
    tables = sources.session_tables(store, name)
    s = tables.session
    if row["sample"] == sources.sample_label(True):
        st.badge("IN-SAMPLE", icon=":material/warning:", color="orange")
        st.warning(f"Session {name!r} is IN-SAMPLE: it {IN_SAMPLE_WARNING}.")
    status_notice(row, name)
    arbitrage = is_arbitrage(s.strategy)
    if not arbitrage:
        caught_up_notice(row, s)
    decided_by = tables.decisions["source"][-1] if tables.decisions.height else "-"
    cols = st.columns(5)
    cols[0].metric(
        "Equity",
        f"{row['equity']:,.2f}",
        f"{row['return']:+.2%}" if row["return"] is not None else None,
        chart_data=tables.equity["equity"].tail(200).to_list() or None,
    )
    cols[1].metric("PnL", f"{row['pnl']:,.2f}")
    cols[2].metric("Cash", f"{row['cash']:,.2f}")
    cols[3].metric("Status", row["status"], help="From the engine's heartbeat: running only while it beats")
    cols[4].metric("Decided by", decided_by, help="The model's threshold, or the reduce-only fallback")
    facts = [
        f"last bar {row['last_bar']:%Y-%m-%d %H:%M} UTC" if row["last_bar"] else "no bar processed yet",
        f"{row['bars']:,} pairs executed" if arbitrage else f"{row['bars']:,} bars of {s.timeframe}",
        f"started {s.created_at:%Y-%m-%d %H:%M} UTC",
        sources.terms(s),
    ]
    if row["heartbeat_s"] is not None:
        facts.append(f"engine heartbeat {row['heartbeat_s']:,.0f} s ago")
    st.caption(" · ".join(facts))

    st.subheader("Equity and drawdown")
    if tables.equity.height:
        log = st.toggle("Log scale", key=f"log-{name}")
        fig = equity_figure(tables.equity.select("ts", "equity"), init_cash=s.init_cash, log_scale=log, height=480)
        fig.update_layout(uirevision=name)
        falls = [float(v) for t in fig.data if t.name == "drawdown" for v in t.y]
        steady_axes(fig, [*tables.equity["equity"].to_list(), s.init_cash], falls, log=log)
        st.plotly_chart(fig, key=f"equity-{name}")
    else:
        st.info("No bar processed yet: the equity curve starts with the first closed bar.")
    if arbitrage:
        arbitrage_sections(tables)
        return
    candles_section(tables)

    st.subheader("Positions")
    if tables.positions.height:
        fmt.table(tables.positions, POSITIONS)
    else:
        st.caption("Flat: no open position.")
    st.subheader("Open orders")
    if tables.open_orders.height:
        fmt.table(tables.open_orders, ORDERS)
    else:
        st.caption("No open order: every order the engine sent has filled, or was rejected or canceled.")
    st.subheader("Per symbol")
    if tables.symbols.height:
        fmt.table(tables.symbols, SYMBOLS)
    else:
        st.caption("No trade yet.")
    decisions_section(tables)
    fills, trips, orders = st.tabs(
        [f"Fills ({tables.fills.height})", f"Round trips ({tables.trades.height})", f"Orders ({tables.orders.height})"]
    )
    with fills:
        fmt.table(tables.fills.head(500), fmt.FILLS)
    with trips:
        fmt.table(tables.trades.reverse(), fmt.TRADES)
    with orders:
        fmt.table(tables.orders.head(500), ORDERS)


def arbitrage_sections(tables: SessionTables) -> None:
    """A paper-arbitrage session (``tradeloop.ops.status``): its venues' balances from the
    pre-funded inventory and its fills, and its orders and fills; no candles, positions or
    decisions (it trades quotes across venues, not a model's bars)."""
    st.subheader("Venue balances")
    st.caption("Pre-funded inventory plus every fill; equity is the pre-funded quote asset plus realised PnL.")
    inventory = ((tables.session.config or {}).get("arbitrage_paper") or {}).get("inventory") or {}
    fills = [
        LegFill(venue=r["symbol"].partition(":")[0], symbol=r["symbol"].partition(":")[2].replace("-", "/", 1),
                side=OrderSide(r["side"]), quantity=r["quantity"], price=r["price"], fee=r["fee"])
        for r in tables.fills.iter_rows(named=True)
    ]  # fmt: skip
    held = [
        {"venue": v, "asset": a, "held": x}
        for v, assets in balances(inventory, fills).items()
        for a, x in assets.items()
    ]
    fmt.table(pl.DataFrame(held), {"venue": fmt.text("venue"), "asset": fmt.text("asset"), "held": fmt.amount("held")})
    fills_tab, orders = st.tabs([f"Fills ({tables.fills.height})", f"Orders ({tables.orders.height})"])
    with fills_tab:
        fmt.table(tables.fills.head(500), fmt.FILLS)
    with orders:
        fmt.table(tables.orders.head(500), ORDERS)


def candles_section(tables: SessionTables) -> None:
    s = tables.session
    st.subheader("Candles, entries and exits")
    if not tables.equity.height:
        st.caption("No bar processed yet.")
        return
    symbol = st.segmented_control("Symbol", list(s.symbols), default=s.symbols[0], key=f"symbol-{s.name}")
    if symbol is None:
        st.info("Pick a symbol to see its candles with the session's buys and sells.")
        return
    start, end = int(tables.equity["ts"][0]), int(tables.equity["ts"][-1])
    candles = sources.candles_between(str(sources.settings().data_dir), s.name, start, end)
    mine = candles.filter(pl.col("symbol") == symbol) if candles.height else candles
    if not mine.height:
        st.info(
            f"The lake holds no {symbol} candles ({s.exchange}, {s.timeframe}) for this session's period: "
            "`tradeloop data status` shows what it holds."
        )
        return
    fills = tables.fills.filter(pl.col("symbol") == symbol).select("ts", "side", "price")
    fig = candles_figure(mine, trades=fills, symbol=symbol, height=460)
    fig.update_layout(uirevision=f"{s.name}-{symbol}")
    st.plotly_chart(fig, key=f"candles-{s.name}-{symbol}")


def decisions_section(tables: SessionTables) -> None:
    st.subheader("Decision source")
    decisions = tables.decisions
    if not decisions.height:
        st.caption("The engine has not recorded what decides entries yet.")
        return
    periods = decision_periods(decisions)
    last = periods.row(-1, named=True)
    threshold = "" if last["threshold"] is None else f" (threshold {last['threshold']:.3f})"
    by = f"the model {last['model']}{threshold}" if last["source"] == "model" else last["source"]
    if periods.height == 1:
        st.markdown(
            f"Entries decided by **{by}** throughout, since {last['since']:%Y-%m-%d %H:%M} UTC: {last['reason']}."
        )
    else:
        st.markdown(
            f"Entries decided by **{by}** since {last['since']:%Y-%m-%d %H:%M} UTC, after "
            f"{periods.height - 1} switch{'es' if periods.height > 2 else ''}:"
        )
        bars = last["clock"] == "bar" and tables.equity.height
        end = tables.equity["time"].max() if bars else datetime.now(UTC)  # a replay's bars are not now
        fig = decision_figure(periods, now=end, revision=tables.session.name)
        st.plotly_chart(fig, key=f"decisions-{tables.session.name}")
    clocks = set(decisions["clock"].to_list())
    st.caption(
        "What decided entries from when: the model's threshold, or the reduce-only fallback when no usable "
        "model is in force. "
        + (
            "Times are the bars it decided from (UTC)."
            if clocks == {"bar"}
            else "Times are the bars it decided from, or the engine's wall clock for records older than that column."
        )
    )
    shown = (
        decisions.drop("clock")
        .reverse()
        .with_columns(
            since=pl.col("since").dt.strftime("%Y-%m-%d %H:%M:%S"),
            until=pl.col("until").dt.strftime("%Y-%m-%d %H:%M:%S").fill_null("in force"),
        )
    )
    fmt.table(shown, DECISIONS)
