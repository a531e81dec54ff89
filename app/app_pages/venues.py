"""Exchange health per venue and the cross-venue arbitrage opportunities, as the process that
owns the exchange connections wrote them to the operational database (``live.venue_monitor``,
``live.arbitrage``)."""

from datetime import UTC, datetime

import formats as fmt
import polars as pl
import sources
import streamlit as st

from tradeloop.ops.market_store import MarketStore
from tradeloop.ops.session_reads import Page

HEALTH = {
    "venue": fmt.text("venue"),
    "score": fmt.ratio("score", "0..1: availability x latency x freshness x clock x stability x status"),
    "status": fmt.text("status", "the venue's own status endpoint"),
    "error_rate": fmt.percent("errors", "rate limits, time-outs and network errors over the window's calls"),
    "rate_limit_hits": fmt.count("rate limits"),
    "p95_s": fmt.ratio("p95 (s)", "95th percentile of the REST calls' seconds"),
    "ws_reconnects": fmt.count("reconnects"),
    "stale_s": fmt.ratio("stale (s)", "since the last WebSocket data"),
    "clock_skew_s": fmt.ratio("clock skew (s)", "the venue's server time minus ours"),
    "measured_at": fmt.when("measured (UTC)"),
}
OPPORTUNITIES = {
    "symbol": fmt.text("symbol"),
    "buy_venue": fmt.text("buy on"),
    "sell_venue": fmt.text("sell on"),
    "start": fmt.when("start (UTC)"),
    "duration_s": fmt.ratio("duration (s)", "to the end, or to now while open"),
    "gross_bps": fmt.ratio("gross (bps)"),
    "net_bps": fmt.ratio("net (bps)", "after both legs' taker fees (and the withdrawal when transfer)"),
    "size": fmt.amount("size", "base amount at both quoted prices"),
    "net_profit": fmt.money("net profit"),
}
SHOWN = 200

st.title("Venues")
store = sources.ops_store()
if store is None:
    st.info("No operational database yet: `tradeloop live run` creates it.")
    st.stop()
market = MarketStore(store)
now = datetime.now(UTC)
st.caption(f"Read {now:%Y-%m-%d %H:%M:%S} UTC")
st.subheader("Exchange health")
rows = market.health()
if not rows:
    st.info("No venue has reported its health yet: the venue monitor writes a snapshot per venue.")
else:
    health = pl.DataFrame(
        [
            {"venue": r.venue, "score": r.score, "status": r.status, "measured_at": r.measured_at.replace(tzinfo=None)}
            | {k: r.figures.get(k) for k in ("error_rate", "rate_limit_hits", "p95_s", "ws_reconnects", "stale_s")}
            | {"clock_skew_s": r.figures.get("clock_skew_s")}
            for r in rows
        ],
        infer_schema_length=None,
    )
    cols = st.columns(min(len(rows), 4))
    for col, r in zip(cols, rows, strict=False):
        col.metric(r.venue, f"{r.score:.2f}", help=f"status: {r.status or 'not asked'}")
    fmt.table(health, HEALTH)
st.subheader("Arbitrage opportunities")
found = list(market.opportunities(Page(limit=SHOWN)))
if not found:
    st.info("No arbitrage opportunity detected (after fees) yet.")
    st.stop()
end_now = int(now.timestamp() * 1000)
table = pl.DataFrame(
    [
        {"symbol": o.symbol, "buy_venue": o.buy_venue, "sell_venue": o.sell_venue,
         "start": datetime.fromtimestamp(o.start_ms / 1000, UTC).replace(tzinfo=None),
         "duration_s": ((o.end_ms if o.end_ms is not None else end_now) - o.start_ms) / 1000,
         "gross_bps": o.gross_bps, "net_bps": o.net_bps, "size": o.size, "net_profit": o.net_profit,
         "open": o.end_ms is None}
        for o in found
    ]
)  # fmt: skip
st.metric("Open now", f"{int(table['open'].sum()):,}")
fmt.table(table.reverse(), OPPORTUNITIES, key="opportunities", max_rows=15)
