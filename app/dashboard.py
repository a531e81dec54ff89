"""tradeloop dashboard (Streamlit, read-only): `tradeloop dashboard` or `streamlit run app/dashboard.py`.

The sidebar's auto-refresh interval (start value: TRADELOOP_DASHBOARD_REFRESH_S) is shared by
every page; the live pages re-read the stores at that interval without reloading. With an
identity provider configured (TRADELOOP_OIDC_ISSUER) a reader signs in first and sees only
their own sessions (``access``)."""

import sys
from pathlib import Path

import streamlit as st

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the pages import `sources` & co. from here

import access
import refresh
import sources

st.set_page_config(page_title="tradeloop", page_icon=":chart_with_upwards_trend:", layout="wide")
access.sign_in_gate(sources.ops_store)  # with an identity provider: nothing shows before sign-in
PAGES = Path(__file__).resolve().parent / "app_pages"
navigation = st.navigation(
    [
        st.Page(PAGES / "overview.py", title="Live sessions", icon=":material/monitoring:", default=True),
        st.Page(PAGES / "performance.py", title="Performance", icon=":material/show_chart:"),
        st.Page(PAGES / "champion.py", title="Champion", icon=":material/emoji_events:"),
        st.Page(PAGES / "challengers.py", title="Challengers", icon=":material/compare_arrows:"),
        st.Page(PAGES / "data_health.py", title="Data health", icon=":material/health_and_safety:"),
        st.Page(PAGES / "venues.py", title="Venues", icon=":material/swap_horiz:"),
    ]
)
refresh.interval_control()
navigation.run()
