"""Plotly figures of backtests and live sessions, built from polars frames.

Every builder takes frames and keyword-only options and returns a
``plotly.graph_objects.Figure``: ``fig.show()`` in JupyterLab, ``st.plotly_chart(fig)`` in
Streamlit, ``fig.to_html()`` for a report. Conventions:

* times are UTC and shown as dates (``ts`` epoch ms or ``time`` datetime columns accepted);
  traces carry them as epoch milliseconds on date axes (compact in HTML, read as UTC);
* returns and drawdowns are fractions shown as percentages; drawdown is negative;
* the equity axis is not zero-based (a curve from 10,000 to 12,000 fills the panel);
* long lines are thinned to ``max_points`` (default 5,000): the lowest and highest point of
  each short run of bars, so peaks, troughs and the max drawdown stay exact;
* trace names are stable (``strategy``, ``buy & hold``, ``drawdown``, ``entries``,
  ``exits``, ``buys``, ``sells``, ``candles``) so apps and tests can find them.

The series arithmetic lives in :mod:`tradeloop.performance.series` and
:mod:`tradeloop.performance.metrics`; this module only draws.
"""

from __future__ import annotations

import calendar
import math

import numpy as np
import plotly.graph_objects as go
import polars as pl
from plotly.subplots import make_subplots

from tradeloop.errors import ConfigError
from tradeloop.performance.series import (
    bars_per_day,
    drawdown_frame,
    equity_frame,
    monthly_returns,
    rolling_sharpe_frame,
    thin_indices,
    to_datetime,
)

STRATEGY_COLOR = "#1f77b4"
BENCHMARK_COLOR = "#7f7f7f"
DRAWDOWN_COLOR = "#d62728"
BUY_COLOR = "#2ca02c"
SELL_COLOR = "#d62728"
HOVER_TIME = "%Y-%m-%d %H:%M UTC"
MAX_POINTS = 5000  # per line: a 1,180 px chart shows no more, and a million 1m bars stay a small page


def _ms(times: pl.Series) -> np.ndarray:
    """Epoch milliseconds as float64: a date axis reads them as UTC, and they travel as compact binary."""
    return times.dt.epoch("ms").cast(pl.Float64).to_numpy()


def _layout(fig: go.Figure, *, title: str | None, height: int) -> go.Figure:
    fig.update_layout(
        template="plotly_white",
        title=title,
        height=height,
        hovermode="x unified",
        margin={"l": 60, "r": 20, "t": 60 if title else 30, "b": 40},
        # a title on the left, the legend on the right of the same line above the plot: they never overlap
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "xanchor": "right", "x": 1},
    )
    fig.update_xaxes(type="date", hoverformat=HOVER_TIME)
    return fig


def _thin(frame: pl.DataFrame, column: str, max_points: int | None) -> pl.DataFrame:
    return frame[thin_indices(frame[column].to_numpy(), max_points)]


def equity_figure(
    equity: pl.DataFrame,
    *,
    benchmark: pl.DataFrame | None = None,
    log_scale: bool = False,
    title: str | None = None,
    init_cash: float | None = None,
    height: int = 560,
    max_points: int | None = MAX_POINTS,
) -> go.Figure:
    """Equity curve over a drawdown panel, with an optional benchmark curve on both.

    Parameters
    ----------
    equity, benchmark
        Frames with ``ts`` (epoch ms) or ``time`` and ``equity`` (a ``portfolio`` column is summed).
    log_scale
        Logarithmic equity axis (long, compounding histories).
    init_cash
        The starting capital: the first peak of the drawdown, as in ``compute_metrics``, so the
        panel's minimum is the reported max drawdown.
    max_points
        Most points per line (extremes kept, see :func:`~tradeloop.performance.series.thin_indices`);
        ``None`` draws every bar.
    """
    full = equity_frame(equity, what="equity")
    eq = _thin(full, "equity", max_points)
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.7, 0.3], vertical_spacing=0.04)
    fig.add_trace(
        go.Scatter(
            x=_ms(eq["time"]),
            y=eq["equity"].to_numpy(),
            name="strategy",
            mode="lines",
            line={"color": STRATEGY_COLOR, "width": 1.6},
            hovertemplate="%{y:,.2f}",
        ),
        row=1,
        col=1,
    )
    dd = _thin(drawdown_frame(full, init_cash=init_cash), "drawdown", max_points)
    fig.add_trace(
        go.Scatter(
            x=_ms(dd["time"]),
            y=dd["drawdown"].to_numpy(),
            name="drawdown",
            mode="lines",
            fill="tozeroy",
            line={"color": DRAWDOWN_COLOR, "width": 1},
            fillcolor="rgba(214,39,40,0.25)",
            hovertemplate="%{y:.2%}",
        ),
        row=2,
        col=1,
    )
    if benchmark is not None:
        bench_full = equity_frame(benchmark, what="benchmark")
        bench = _thin(bench_full, "equity", max_points)
        fig.add_trace(
            go.Scatter(
                x=_ms(bench["time"]),
                y=bench["equity"].to_numpy(),
                name="buy & hold",
                mode="lines",
                line={"color": BENCHMARK_COLOR, "width": 1.2, "dash": "dot"},
                hovertemplate="%{y:,.2f}",
            ),
            row=1,
            col=1,
        )
        bdd = _thin(drawdown_frame(bench_full, init_cash=init_cash), "drawdown", max_points)
        fig.add_trace(
            go.Scatter(
                x=_ms(bdd["time"]),
                y=bdd["drawdown"].to_numpy(),
                name="buy & hold drawdown",
                mode="lines",
                line={"color": BENCHMARK_COLOR, "width": 1, "dash": "dot"},
                hovertemplate="%{y:.2%}",
                showlegend=False,
            ),
            row=2,
            col=1,
        )
    _layout(fig, title=title, height=height)
    curves = [trace.y for trace in fig.data if trace.yaxis == "y"]
    fig.update_yaxes(
        title_text="equity",
        type="log" if log_scale else "linear",
        tickformat=",.0f",
        rangemode="normal",
        row=1,
        col=1,
        **_flat_range(curves, log_scale=log_scale),
    )
    deepest = min((float(np.nanmin(t.y)) for t in fig.data if t.yaxis == "y2" and np.isfinite(t.y).any()), default=0.0)
    fig.update_yaxes(
        title_text="drawdown",
        tickformat=".0%" if deepest <= -0.05 else ".1%",
        rangemode="tozero",
        row=2,
        col=1,
        **({"range": [-0.01, 0.0]} if deepest > -0.01 else {}),
    )  # else 0..+100% when flat
    fig.update_xaxes(title_text="time (UTC)", row=2, col=1)
    _single_time(fig, _ms(eq["time"]))
    return fig


def _flat_range(curves: list, *, log_scale: bool) -> dict:
    """A range of +-1% around curves that barely move (a strategy that never trades), whose
    automatic ticks would repeat one rounded value ("10,000 10,000 10,001")."""
    values = np.concatenate([np.asarray(c, dtype=np.float64) for c in curves]) if curves else np.empty(0)
    values = values[np.isfinite(values)]
    if values.size == 0 or values.max() - values.min() >= 0.01 * abs(values.max()) or values.max() <= 0:
        return {}
    mid = (values.max() + values.min()) / 2
    low, high = mid * 0.99, mid * 1.01
    return {"range": [math.log10(low), math.log10(high)] if log_scale else [low, high]}


def _single_time(fig: go.Figure, times: np.ndarray) -> None:
    """One bar: markers (a line through one point draws nothing) on a day-wide time axis around it
    (plotly would zoom to milliseconds around the point)."""
    if times.size and times.min() == times.max():
        fig.update_traces(mode="lines+markers", selector={"type": "scatter"})
        fig.update_xaxes(range=[times[0] - 43_200_000, times[0] + 43_200_000])


def _one_symbol(frame: pl.DataFrame, symbol: str | None, *, what: str) -> tuple[pl.DataFrame, str | None]:
    if "symbol" not in frame.columns:
        return frame, symbol
    symbols = frame["symbol"].unique(maintain_order=True).to_list()
    if symbol is None:
        if len(symbols) > 1:
            raise ConfigError(
                f"{what} holds {len(symbols)} symbols {symbols}; pass symbol=, e.g. symbol={symbols[0]!r}"
            )
        return frame, symbols[0] if symbols else None
    if symbol not in symbols:
        raise ConfigError(f"symbol={symbol!r} is not in the {what}; it holds {symbols}")
    return frame.filter(pl.col("symbol") == symbol), symbol


def _coarser(candles: pl.DataFrame, max_candles: int | None) -> tuple[pl.DataFrame, int]:
    """Merge runs of ``n`` consecutive bars into one candle so at most ``max_candles`` are drawn."""
    if max_candles is None or candles.height <= max_candles:
        return candles, 1
    n = math.ceil(candles.height / max_candles)
    merged = (
        candles.with_row_index("_i")
        .group_by(pl.col("_i") // n, maintain_order=True)
        .agg(
            pl.col("time").first(),
            pl.col("open").first(),
            pl.col("high").max(),
            pl.col("low").min(),
            pl.col("close").last(),
        )
    )
    return merged.drop("_i"), n


def candles_figure(
    candles: pl.DataFrame,
    *,
    trades: pl.DataFrame | None = None,
    symbol: str | None = None,
    title: str | None = None,
    max_candles: int | None = 5000,
    max_markers: int | None = MAX_POINTS,
    height: int = 520,
) -> go.Figure:
    """Candlesticks with entries and exits.

    Parameters
    ----------
    candles
        ``ts`` or ``time``, ``open``, ``high``, ``low``, ``close`` (and ``symbol`` when several).
    trades
        A trade ledger (``BacktestResult.trades``: entries at ``entry_ts``/``entry_price``, exits
        of closed trades at ``exit_ts``/``exit_price``) or fills (``ts``, ``side`` buy/sell,
        ``price``). Buys are triangles up, sells triangles down.
    symbol
        Which symbol to draw when the frames hold several.
    max_candles
        Above this many bars, consecutive bars are merged into coarser candles (the markers stay
        at their exact times and prices); ``None`` draws every bar.
    max_markers
        Above this many trades (or fills), every n-th is marked so that at most this many are
        drawn, and the title says so; ``None`` marks every one.
    """
    missing = sorted({"open", "high", "low", "close"} - set(candles.columns))
    if missing or not ({"ts", "time"} & set(candles.columns)):
        raise ConfigError(f"candles lack column(s) {missing or ['ts or time']}; pass ts, open, high, low, close")
    if max_markers is not None and max_markers < 1:
        raise ConfigError(f"max_markers={max_markers} marks no trade; use at least 1 (e.g. 5000), or None for all")
    frame, symbol = _one_symbol(candles, symbol, what="candles")
    frame = frame.select(time=to_datetime(frame), open="open", high="high", low="low", close="close")
    frame = frame.drop_nans(["open", "high", "low", "close"]).sort("time")
    frame, n = _coarser(frame, max_candles)
    fig = go.Figure(
        go.Candlestick(
            x=_ms(frame["time"]),
            open=frame["open"].to_numpy(),
            high=frame["high"].to_numpy(),
            low=frame["low"].to_numpy(),
            close=frame["close"].to_numpy(),
            name="candles",
            showlegend=False,
        )
    )
    notes = [f"one candle = {n} bars"] if n > 1 else []
    if trades is not None and trades.height:
        picked = trades.filter(pl.col("symbol") == symbol) if symbol and "symbol" in trades.columns else trades
        if max_markers is not None and picked.height > max_markers:
            every = math.ceil(picked.height / max_markers)
            notes.append(f"markers: every {_ordinal(every)} of {picked.height:,} trades")
            picked = picked.gather_every(every)
        for trace in _ledger_markers(picked) if "entry_ts" in picked.columns else _fill_markers(picked):
            fig.add_trace(trace)
    label = title or (f"{symbol}" if symbol else None)
    if notes:
        label = f"{label or 'price'} ({'; '.join(notes)})"
    _layout(fig, title=label, height=height)
    fig.update_layout(xaxis_rangeslider_visible=False, hovermode="closest")
    fig.update_yaxes(title_text="price", tickformat=",.2f")
    fig.update_xaxes(title_text="time (UTC)")
    return fig


def _ordinal(k: int) -> str:
    return f"{k}{'th' if 10 <= k % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(k % 10, 'th')}"


def _marker(
    x: np.ndarray, y: np.ndarray, *, name: str, symbols: list[str], color: str | list[str], text: list[str]
) -> go.Scatter:
    return go.Scatter(
        x=x,
        y=y,
        name=name,
        mode="markers",
        text=text,
        hovertemplate="%{text}<extra></extra>",
        marker={"symbol": symbols, "color": color, "size": 11, "line": {"width": 1, "color": "#222"}},
    )


def _ledger_markers(trades: pl.DataFrame) -> list[go.Scatter]:
    ledger = trades.with_columns(entry_time=to_datetime(trades, "entry_ts"), exit_time=to_datetime(trades, "exit_ts"))
    long = (ledger["side"] == "long").to_list()
    entries = _marker(
        _ms(ledger["entry_time"]),
        ledger["entry_price"].to_numpy(),
        name="entries",
        symbols=["triangle-up" if lg else "triangle-down" for lg in long],
        color=[BUY_COLOR if lg else SELL_COLOR for lg in long],
        text=[
            f"{'buy' if lg else 'sell short'} (enter {side}) at {px:,.2f}"
            for lg, side, px in zip(long, ledger["side"], ledger["entry_price"], strict=True)
        ],
    )
    closed = ledger.filter(~pl.col("is_open"))
    long_closed = (closed["side"] == "long").to_list()
    exits = _marker(
        _ms(closed["exit_time"]),
        closed["exit_price"].to_numpy(),
        name="exits",
        symbols=["triangle-down" if lg else "triangle-up" for lg in long_closed],
        color=[SELL_COLOR if lg else BUY_COLOR for lg in long_closed],
        text=[
            f"{'sell' if lg else 'buy back'} (exit {side}, {reason}) at {px:,.2f}: {ret:+.2%}"
            for lg, side, reason, px, ret in zip(
                long_closed, closed["side"], closed["exit_reason"], closed["exit_price"], closed["return"], strict=True
            )
        ],
    )
    return [entries, exits]


def _fill_markers(fills: pl.DataFrame) -> list[go.Scatter]:
    missing = sorted({"side", "price"} - set(fills.columns))
    if missing or not ({"ts", "time"} & set(fills.columns)):
        raise ConfigError(
            f"trades have columns {fills.columns}; pass a trade ledger (entry_ts, entry_price, ...) "
            "or fills (ts, side buy/sell, price)"
        )
    fills = fills.with_columns(_time=to_datetime(fills), _side=pl.col("side").str.to_lowercase())
    out = []
    for side, name, symbol, color in (
        ("buy", "buys", "triangle-up", BUY_COLOR),
        ("sell", "sells", "triangle-down", SELL_COLOR),
    ):
        part = fills.filter(pl.col("_side") == side)
        out.append(
            _marker(
                _ms(part["_time"]),
                part["price"].to_numpy(),
                name=name,
                symbols=[symbol] * part.height,
                color=color,
                text=[f"{side} at {px:,.2f}" for px in part["price"]],
            )
        )
    return out


MONTHS = [calendar.month_abbr[m] for m in range(1, 13)]


def monthly_returns_figure(
    equity: pl.DataFrame, *, init_cash: float | None = None, title: str | None = None, height: int | None = None
) -> go.Figure:
    """Heatmap of calendar-month returns, years down and months across, each cell labelled in %.

    The year's label carries its compounded return. Months outside the curve stay blank.
    """
    months = monthly_returns(equity, init_cash=init_cash)
    years = sorted(months["year"].unique().to_list(), reverse=True)
    z = [[None] * 12 for _ in years]
    for year, month, value in months.iter_rows():
        z[years.index(year)][month - 1] = value
    text = [["" if v is None else f"{v:.1%}" for v in row] for row in z]
    totals = months.group_by("year").agg(((pl.col("return") + 1.0).product() - 1.0).alias("total"))
    total = dict(totals.iter_rows())
    labels = [f"{y} ({total[y]:+.1%})" for y in years]
    finite = [abs(v) for v in months["return"].to_list() if v is not None and math.isfinite(v)]
    bound = max(finite, default=0.01) or 0.01
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=MONTHS,
            y=labels,
            text=text,
            texttemplate="%{text}",
            colorscale="RdYlGn",
            zmid=0.0,
            zmin=-bound,
            zmax=bound,
            hovertemplate="%{y} %{x}: %{text}<extra></extra>",
            name="monthly returns",
            colorbar={**_scale_ticks(bound), "title": {"text": "return"}},
            xgap=2,
            ygap=2,
        )
    )
    fig.update_layout(
        template="plotly_white",
        title=title or "Monthly returns",
        height=height or max(220, 80 + 34 * len(years)),
        margin={"l": 110, "r": 20, "t": 60, "b": 30},
    )
    fig.update_yaxes(type="category")
    return fig


def _scale_ticks(bound: float) -> dict:
    """Five ticks from -bound to +bound, with as many decimals as it takes to tell them apart."""
    values = [-bound, -bound / 2, 0.0, bound / 2, bound]
    for digits in range(5):
        text = [f"{v:.{digits}%}" for v in values]
        if len(set(text)) == len(text):
            break
    return {"tickvals": values, "ticktext": text}


def rolling_sharpe_figure(
    equity: pl.DataFrame,
    *,
    timeframe: str,
    window_days: float = 90,
    benchmark: pl.DataFrame | None = None,
    init_cash: float | None = None,
    title: str | None = None,
    height: int = 360,
    max_points: int | None = MAX_POINTS,
) -> go.Figure:
    """Sharpe ratio over a trailing window (annualised with 365 days), with an optional benchmark line
    (each line thinned to ``max_points``, as in :func:`equity_figure`)."""
    fig = go.Figure()
    curves = [("strategy", equity, STRATEGY_COLOR)]
    if benchmark is not None:
        curves.append(("buy & hold", benchmark, BENCHMARK_COLOR))
    for name, frame, color in curves:
        rolling = rolling_sharpe_frame(frame, timeframe=timeframe, window_days=window_days, init_cash=init_cash)
        line = _thin(rolling, "sharpe", max_points)
        fig.add_trace(
            go.Scatter(
                x=_ms(line["time"]),
                y=line["sharpe"].to_numpy(),
                name=name,
                mode="lines",
                line={"color": color, "width": 1.4, **({"dash": "dot"} if name != "strategy" else {})},
                hovertemplate="%{y:.2f}",
            )
        )
        if name == "strategy" and rolling["sharpe"].is_not_nan().sum() == 0:
            short = rolling.height < round(window_days * bars_per_day(timeframe))
            why = (
                f"the curve is shorter than the {window_days:g}-day window"
                if short
                else f"no Sharpe: the curve is flat in every {window_days:g}-day window (no trades?)"
            )
            fig.add_annotation(text=why, showarrow=False, xref="paper", yref="paper", x=0.5, y=0.5)
    fig.add_hline(y=0, line={"color": "#999", "width": 1})
    _layout(fig, title=title or f"Rolling Sharpe ({window_days:g} days)", height=height)
    fig.update_yaxes(title_text="Sharpe", tickformat=".1f")
    fig.update_xaxes(title_text="time (UTC)")
    _single_time(fig, _ms(equity_frame(equity)["time"]))
    return fig
