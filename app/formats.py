"""How the dashboard's tables read: one column spec per kind of number, dates for times.

``table`` shows the columns a spec names, in its order, with its labels and formats (those
a frame lacks are left out), so every page's tables format money, fractions and times the
same way and never show a raw float or an epoch number.
"""

from __future__ import annotations

import polars as pl
import streamlit as st

C = st.column_config
DATE = "YYYY-MM-DD HH:mm"


def money(label: str, help: str | None = None) -> C.NumberColumn:
    return C.NumberColumn(label, format="%,.2f", help=help)


def price(label: str, help: str | None = None) -> C.NumberColumn:
    return C.NumberColumn(label, format="%,.2f", help=help)


def amount(label: str, help: str | None = None) -> C.NumberColumn:
    return C.NumberColumn(label, format="%.6f", help=help)


PERCENT = "%.2f%%"  # fractions are shown x 100 by ``table`` (Streamlit's "percent" drops trailing zeros)


def percent(label: str, help: str | None = None) -> C.NumberColumn:
    return C.NumberColumn(label, format=PERCENT, help=help)


def is_percent(config: C.Column) -> bool:
    return isinstance(config, dict) and (config.get("type_config") or {}).get("format") == PERCENT


def ratio(label: str, help: str | None = None) -> C.NumberColumn:
    return C.NumberColumn(label, format="%.2f", help=help)


def count(label: str, help: str | None = None) -> C.NumberColumn:
    return C.NumberColumn(label, format="%,d", help=help)


def when(label: str, help: str | None = None) -> C.DatetimeColumn:
    return C.DatetimeColumn(label, format=DATE, help=help)


def text(label: str, help: str | None = None, width: str | None = None) -> C.TextColumn:
    return C.TextColumn(label, help=help, width=width)


def table(frame: pl.DataFrame, spec: dict[str, C.Column], *, key: str | None = None, max_rows: int = 10) -> None:
    """``frame``'s columns named in ``spec`` (in its order), formatted by it, without the index;
    taller than ``max_rows`` rows it scrolls. Missing values read ``-``."""
    columns = [c for c in spec if c in frame.columns]
    height = 38 + 35 * max(1, min(frame.height, max_rows))
    shown = frame.select(pl.col(c) * 100 if is_percent(spec[c]) else pl.col(c) for c in columns)
    st.dataframe(
        shown,
        hide_index=True,
        column_config={c: spec[c] for c in columns},
        key=key,
        height=height,
        width="stretch",
        placeholder="-",
    )


TRADES = {
    "run": text("run"),
    "symbol": text("symbol"),
    "entry_time": when("entry"),
    "exit_time": when("exit"),
    "quantity": amount("quantity"),
    "entry_price": price("entry price"),
    "exit_price": price("exit price"),
    "fees": money("fees"),
    "pnl": money("PnL"),
    "return": percent("return"),
    "is_open": C.CheckboxColumn("open"),
}

FILLS = {
    "time": when("time"),
    "symbol": text("symbol"),
    "side": text("side"),
    "quantity": amount("quantity"),
    "price": price("price"),
    "fee": money("fee"),
    "trade_id": text("trade id"),
}
