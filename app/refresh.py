"""Auto-refresh of the live pages: how often they re-read the stores, and when they last did.

The interval is a sidebar control shared by every page (key ``refresh_s``), starting at
``TRADELOOP_DASHBOARD_REFRESH_S`` (seconds; 0 turns it off; default 10). A page passes
:func:`every` to ``st.fragment(run_every=...)``: only the fragment reruns, widgets outside it
keep their state, and nothing reloads the browser page.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime

import streamlit as st

from tradeloop.errors import ConfigError

REFRESH_ENV = "TRADELOOP_DASHBOARD_REFRESH_S"
DEFAULT_S = 10
CHOICES_S = (0, 5, 10, 30, 60, 300)
KEY = "refresh_s"


def default_seconds() -> int:
    """The starting interval from ``TRADELOOP_DASHBOARD_REFRESH_S``; a bad value is a ConfigError."""
    raw = os.environ.get(REFRESH_ENV, "").strip()
    if not raw:
        return DEFAULT_S
    try:
        seconds = int(raw)
    except ValueError:
        seconds = -1
    if seconds < 0 or seconds > 3600:
        raise ConfigError(
            f"{REFRESH_ENV}={raw!r} is not a refresh interval; give whole seconds from 1 to 3600, "
            "or 0 to turn auto-refresh off, e.g. 10"
        )
    return seconds


def words(seconds: int) -> str:
    if seconds == 0:
        return "off"
    return f"every {seconds} s" if seconds < 60 else f"every {seconds // 60} min"


def interval_control() -> None:
    """The sidebar control (call once, in the entry script, before the pages run). A bad
    ``TRADELOOP_DASHBOARD_REFRESH_S`` is named in the sidebar, and the default used."""
    try:
        start = default_seconds()
    except ConfigError as exc:
        st.sidebar.error(f"{exc}; using {DEFAULT_S} s")
        start = DEFAULT_S
    options = sorted({*CHOICES_S, start})
    st.sidebar.selectbox(
        "Auto-refresh",
        options,
        index=options.index(start),
        format_func=words,
        key=KEY,
        help=f"How often the live pages re-read the database (start value: {REFRESH_ENV}).",
    )


def _chosen() -> int:
    return int(st.session_state.get(KEY, DEFAULT_S))


def every() -> float | None:
    """The interval for ``st.fragment(run_every=...)``: None when auto-refresh is off."""
    seconds = _chosen()
    return float(seconds) if seconds else None


def last_updated() -> None:
    """A caption with the time of this read (UTC) and the refresh interval."""
    seconds = _chosen()
    now = datetime.now(UTC)
    st.caption(f"Last updated {now:%Y-%m-%d %H:%M:%S} UTC · auto-refresh {words(seconds)}")
