"""Live sessions: every session's status from its engine's heartbeat, then one session's
equity, candles with its trades, positions, orders, fills, per-symbol figures and decision
source. Re-read in place at the sidebar's auto-refresh interval (a fragment, no page reload)."""

import formats as fmt
import refresh
import session_view
import sources
import streamlit as st

SESSIONS = {
    "session": fmt.text("session"),
    "status": fmt.text("status", "running only while the engine's heartbeat is fresh; stale: no engine alive for it"),
    "heartbeat_s": fmt.C.NumberColumn("heartbeat", format="%,.0f s ago", help="when the engine last beat"),
    "mode": fmt.text("mode"),
    "sample": fmt.text("sample"),
    "symbols": fmt.text("symbols"),
    "equity": fmt.money("equity"),
    "pnl": fmt.money("PnL"),
    "return": fmt.percent("return"),
    "bars": fmt.count("bars"),
    "last_bar": fmt.when("last bar", "open time of the last bar processed (UTC)"),
}

st.title("Live sessions")


@st.fragment(run_every=refresh.every())
def live() -> None:
    refresh.last_updated()
    store = sources.ops_store()
    if store is None or not sources.session_names(store):
        st.info("No trading session yet: start one with `tradeloop live run` (the README's `make demo` does).")
        return
    sessions = sources.sessions_frame(store)
    fmt.table(sessions, SESSIONS)
    name = st.selectbox("Session", sessions["session"].to_list(), key="session", placeholder="Pick a session")
    if name is None:
        st.info("Pick a session above to see its equity, candles, positions, orders and fills.")
        return
    session_view.show(store, name, sessions.row(sessions["session"].to_list().index(name), named=True))


live()
