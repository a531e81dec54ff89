"""Champion and challengers, live: each challenger a session runs in shadow against its
champion on the same bars, with the live sequential test's current statistic, and the growth
of one unit under each."""

import challenger_view as view
import formats as fmt
import refresh
import sources
import streamlit as st

STANDINGS = {  # who, where it stands and what the test says first; the figures after
    "artifact": fmt.text("challenger"),
    "status": fmt.text("status", help="testing (its evidence is judged), recommended, promoted or retired"),
    "capital": fmt.text(
        "capital",
        help="shadow: simulated beside the champion, no order sent; 20% open: trades that share of the session's "
        "capital with real orders (waiting: the engine has not funded it yet; closing: it is being flattened)",
    ),
    "decision": fmt.text(
        "decision", help="collecting (before the minimum sample), continue, promote, recommended, promoted"
    ),
    "bars": fmt.count("paired bars"),
    "min_bars": fmt.count("needs", help="paired bars its test needs before a promotion (its own, or the default)"),
    "log_lr": fmt.ratio("statistic", help="log of the mixture likelihood ratio (mSPRT)"),
    "threshold": fmt.ratio("promotes at", help="log(1/alpha)"),
    "difference": fmt.percent("difference per bar", help="challenger minus champion"),
    "z": fmt.ratio("z (HAC)", help="the mean difference over its Newey-West standard error"),
    "champion_mean": fmt.percent("champion, mean per bar"),
    "challenger_mean": fmt.percent("challenger, mean per bar"),
}

st.title("Challengers")


@st.fragment(run_every=refresh.every())
def challengers() -> None:
    refresh.last_updated()
    store = sources.ops_store()
    names = sources.session_names(store)
    if store is None or not names:
        st.info("No session yet: a session's challengers run beside its champion (`POST /sessions/{id}/challengers`).")
        return
    name = st.selectbox("Session", names, key="challengers-session", placeholder="Pick a session")
    if name is None:
        st.info("Pick a session above to see its challengers.")
        return
    session = store.session(name)
    try:
        entry = sources.registry().champion(session.strategy)
    except Exception:  # noqa: BLE001 - an unreadable registry: no champion to pair against
        entry = None
    champion = entry.artifact if entry is not None else None  # only the bars against it count
    standings = view.standings_frame(store, session.id, champion=champion)
    if standings.is_empty():
        st.info(
            f"Session {name!r} runs no challenger: name a registered model of {session.strategy} with "
            f"`POST /sessions/{session.id}/challengers`."
        )
        return
    st.caption(
        "Each challenger decides on the champion's bars: in shadow, filled with the paper broker's rules; with a "
        "share of the capital, with real orders. The test promotes it when its statistic reaches the bar after the "
        "minimum sample (false-promotion rate within 5%)."
    )
    fmt.table(standings, STANDINGS, key=f"challengers-{name}")
    growth = view.growth_frame(store, session.id, champion=champion)
    if growth.height:
        st.subheader("One unit, compounded over the paired bars")
        st.line_chart(growth, x="time", y=[c for c in growth.columns if c != "time"])


challengers()
