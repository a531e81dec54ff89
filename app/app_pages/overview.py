"""Live sessions: positions, open orders, PnL and equity."""

import polars as pl
import sources
import streamlit as st

from tradeloop.ops.status import IN_SAMPLE_WARNING

st.title("Live sessions")
store = sources.ops_store()
if store is None or not store.sessions():
    st.info("No trading session yet: start one with `tradeloop live run` (the README's `make demo` does).")
    st.stop()

sessions = sources.sessions_frame(store)
st.dataframe(sessions, hide_index=True, column_config={
    "return": st.column_config.NumberColumn(format="percent"),
    "equity": st.column_config.NumberColumn(format="%.2f"), "pnl": st.column_config.NumberColumn(format="%.2f"),
    "cash": st.column_config.NumberColumn(format="%.2f")})
name = st.selectbox("Session", sessions["session"].to_list())
tables = sources.session_tables(store, name)
row = sessions.filter(pl.col("session") == name).row(0, named=True)
if row["sample"] == sources.sample_label(True):
    st.badge("IN-SAMPLE", icon=":material/warning:", color="orange")
    st.warning(f"Session {name!r} is IN-SAMPLE: it {IN_SAMPLE_WARNING}.")

a, b, c, d = st.columns(4)
a.metric("Equity", f"{row['equity']:,.2f}", f"{row['return']:+.2%}")
b.metric("PnL", f"{row['pnl']:,.2f}")
c.metric("Cash", f"{row['cash']:,.2f}")
d.metric("Status", row["status"])

st.subheader("Equity")
if tables["equity"].height:
    st.line_chart(tables["equity"].select("time", "equity").to_pandas(), x="time", y="equity")
left, right = st.columns(2)
left.subheader("Positions")
left.dataframe(tables["positions"].select("symbol", "quantity", "entry_price", "last_price", "realized_pnl"),
               hide_index=True)
right.subheader("Open orders")
right.dataframe(tables["open_orders"].select("client_order_id", "symbol", "side", "quantity", "quote_amount",
                                             "status"), hide_index=True)
st.subheader("Recent fills")
st.dataframe(tables["fills"].head(50).select("time", "symbol", "side", "quantity", "price", "fee", "trade_id"),
             hide_index=True)
