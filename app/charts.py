"""The dashboard's own plotly figures (the library's are in ``tradeloop.performance.plots``):
runs side by side, the decision source over time, lake coverage.

Conventions as the library's: UTC times shown as dates, returns and drawdowns as
percentages, drawdown negative, the value axis not zero-based. ``uirevision`` keeps a
reader's zoom and legend choices when an auto-refresh redraws a figure.
"""

from __future__ import annotations

import math
from datetime import datetime

import plotly.graph_objects as go
import polars as pl
from comparison import Run
from plotly.subplots import make_subplots

from tradeloop.performance.plots import DRAWDOWN_COLOR, HOVER_TIME
from tradeloop.performance.series import drawdown_frame

COLORS = {"live": "#1f77b4", "backtest": "#ff7f0e", "research": "#7f7f7f"}
SOURCE_COLORS = {"model": "#2ca02c", "fallback (reduce-only)": DRAWDOWN_COLOR}


def _frame(fig: go.Figure, *, height: int, revision: str) -> go.Figure:
    fig.update_layout(
        template="plotly_white",
        height=height,
        hovermode="x unified",
        uirevision=revision,
        margin={"l": 60, "r": 20, "t": 30, "b": 40},
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "xanchor": "left", "x": 0},
    )
    fig.update_xaxes(type="date", hoverformat=HOVER_TIME)
    return fig


FLAT = 1e-4  # a curve moving less than this share of its level reads as flat


def steady_axes(fig: go.Figure, values: list[float], drawdowns: list[float], *, log: bool = False) -> go.Figure:
    """Give a flat curve (a session that has not traded yet) a readable band instead of an axis
    zoomed on rounding noise, and a zero drawdown panel a small range below zero."""
    if values:
        lo, hi = min(values), max(values)
        if hi - lo <= FLAT * max(abs(hi), 1e-12):
            pad = max(abs(hi) * 0.01, 1e-9)
            band = [lo - pad, hi + pad]
            fig.update_yaxes(range=[math.log10(v) for v in band] if log and lo - pad > 0 else band, row=1, col=1)
    if drawdowns and min(drawdowns) > -FLAT:
        fig.update_yaxes(range=[-0.01, 0.001], tickformat=".1%", row=2, col=1)
    return fig


def comparison_figure(runs: list[Run], *, log_scale: bool = False, revision: str = "runs") -> go.Figure:
    """Growth of 1 of every run over its drawdown (each measured from its own capital)."""
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.68, 0.32], vertical_spacing=0.05)
    for run in runs:
        color = COLORS.get(run.kind)
        dash = None if run.kind == "live" else ("dash" if run.kind == "backtest" else "dot")
        growth = run.equity["equity"] / run.init_cash
        fig.add_trace(
            go.Scatter(
                x=run.equity["time"].to_list(),
                y=growth.to_numpy(),
                name=run.label,
                mode="lines",
                legendgroup=run.label,
                line={"color": color, "width": 1.8, "dash": dash},
                hovertemplate="%{y:.3f}",
            ),
            row=1,
            col=1,
        )
        dd = drawdown_frame(run.equity.select("time", "equity"), init_cash=run.init_cash)
        fig.add_trace(
            go.Scatter(
                x=dd["time"].to_list(),
                y=dd["drawdown"].to_numpy(),
                name=run.label,
                mode="lines",
                legendgroup=run.label,
                showlegend=False,
                hovertemplate="%{y:.2%}",
                line={"color": color, "width": 1.2, "dash": dash},
            ),
            row=2,
            col=1,
        )
    _frame(fig, height=520, revision=revision)
    growth = [float(v) for r in runs for v in (r.equity["equity"] / r.init_cash).to_list()]
    falls = [float(v) for t in fig.data[1::2] for v in t.y]
    steady_axes(fig, growth, falls, log=log_scale)
    fig.update_yaxes(
        title_text="growth of 1",
        type="log" if log_scale else "linear",
        tickformat=".2f",
        rangemode="normal",
        row=1,
        col=1,
    )
    fig.update_yaxes(title_text="drawdown", tickformat=".0%", row=2, col=1)
    fig.update_xaxes(title_text="time (UTC)", row=2, col=1)
    return fig


def decision_figure(decisions: pl.DataFrame, *, now: datetime, revision: str = "decisions") -> go.Figure:
    """What decided entries, as bars on a time axis: one row per source, one bar per period in force."""
    fig = go.Figure()
    ends = decisions["until"].fill_null(now.replace(tzinfo=None) if isinstance(now, datetime) else now).to_list()
    for source in decisions["source"].unique(maintain_order=True).to_list():
        rows = [i for i, s in enumerate(decisions["source"].to_list()) if s == source]
        starts = [decisions["since"][i] for i in rows]
        widths = [max((ends[i] - decisions["since"][i]).total_seconds() * 1000, 1000.0) for i in rows]
        text = [
            f"{source}: model {decisions['model'][i] or '-'}, threshold "
            f"{'-' if decisions['threshold'][i] is None else format(decisions['threshold'][i], '.3f')}<br>"
            f"{decisions['reason'][i]}"
            for i in rows
        ]
        fig.add_trace(
            go.Bar(
                y=[source] * len(rows),
                x=widths,
                base=starts,
                orientation="h",
                name=source,
                marker_color=SOURCE_COLORS.get(source, "#7f7f7f"),
                text=text,
                textposition="none",
                hovertemplate="%{text}<extra></extra>",
            )
        )
    _frame(fig, height=120 + 40 * decisions["source"].n_unique(), revision=revision)
    fig.update_layout(hovermode="closest", barmode="overlay", showlegend=False)
    fig.update_yaxes(type="category", title_text=None)
    fig.update_xaxes(
        title_text="in force from the bar (UTC)"
        if set(decisions["clock"].to_list()) == {"bar"}
        else "in force since (bar, or the engine's wall clock for older records; UTC)"
    )
    return fig


def coverage_figure(health: pl.DataFrame) -> go.Figure:
    """Coverage of each series (stored candles / expected between its first and last), labelled in %."""
    frame = health.sort("coverage", descending=True)
    text = [f"{c:.2%}" for c in frame["coverage"]]
    hover = [
        f"{s}: {c:,} candles, {m:,} missing in {g:,} gaps"
        for s, c, m, g in frame.select("series", "candles", "missing", "gaps").iter_rows()
    ]
    fig = go.Figure(
        go.Bar(
            x=frame["coverage"].to_numpy(),
            y=frame["series"].to_list(),
            orientation="h",
            text=text,
            textposition="auto",
            hovertext=hover,
            hoverinfo="text",
            marker_color="#1f77b4",
        )
    )
    fig.update_layout(
        template="plotly_white", height=80 + 32 * frame.height, margin={"l": 10, "r": 20, "t": 20, "b": 40}
    )
    fig.update_xaxes(tickformat=".1%", range=[0.0, 1.0], title_text="coverage")
    fig.update_yaxes(type="category", autorange="reversed")
    return fig
