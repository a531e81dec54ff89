"""A self-contained HTML tearsheet of one backtest (quantstats style, plus the trades list).

Self-contained: plotly's JavaScript is embedded once in the page, every chart is inline and
nothing is fetched from the network, so the file opens anywhere (mail, CI artifact, offline).

Contents, top to bottom: header (strategy, symbols, timeframe, period, sizing), headline
figures against buy and hold, the stats table and per-symbol table, equity over drawdown
(with buy and hold; a log axis once a curve spans ten times its low), monthly returns,
rolling Sharpe, candles with entries and exits (each symbol when there are at most
``MAX_CANDLE_CHARTS``, else the first), and the trades list.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import plotly.graph_objects as go
import polars as pl
from plotly.offline import get_plotlyjs

from tradeloop.data.atomic import write_bytes_atomic
from tradeloop.data.schema import timeframe_ms
from tradeloop.performance import format as fmt
from tradeloop.performance.plots import (
    equity_figure,
    monthly_returns_figure,
    rolling_sharpe_figure,
)
from tradeloop.performance.series import equity_frame
from tradeloop.performance.stats import STYLE, Stats, frame_html, result_stats
from tradeloop.performance.trades import trade_list

if TYPE_CHECKING:
    from tradeloop.backtest.engine import BacktestResult

DAY_MS = 86_400_000
MAX_CANDLE_CHARTS = 4
MAX_TRADE_ROWS = 5000

PAGE_STYLE = """<style>
body {font: 14px/1.45 system-ui, -apple-system, Segoe UI, sans-serif; color: #1d2330; margin: 0; background: #f6f7f9}
main {max-width: 1180px; margin: 0 auto; padding: 24px 28px 60px; background: #fff}
h1 {font-size: 24px; margin: 0 0 4px} h2 {font-size: 17px; margin: 30px 0 8px; border-bottom: 1px solid #e3e6eb;
  padding-bottom: 4px}
.meta {color: #566; margin: 2px 0} .meta b {color: #1d2330}
.cards {display: flex; flex-wrap: wrap; gap: 10px; margin: 18px 0 6px}
.card {border: 1px solid #e3e6eb; border-radius: 6px; padding: 8px 14px; min-width: 120px}
.card .label {font-size: 12px; color: #667; text-transform: uppercase; letter-spacing: .03em}
.card .value {font-size: 20px; font-weight: 600} .card .bench {font-size: 12px; color: #667}
.columns {display: flex; flex-wrap: wrap; gap: 28px; align-items: flex-start}
.note {color: #a15c00; background: #fff6e5; border: 1px solid #f3d9a4; padding: 6px 10px; border-radius: 4px}
.scroll {max-height: 560px; overflow: auto; border: 1px solid #e3e6eb}
.scroll td {white-space: nowrap}
.scroll thead th {position: sticky; top: 0; background: #fff}
</style>"""


def tearsheet_html(result: BacktestResult, *, title: str | None = None, stats: Stats | None = None) -> str:
    """The report as one HTML string (see the module docstring)."""
    stats = stats or result_stats(result)
    name = title or stats.title
    bench = result.benchmark()
    figures: list[tuple[str, go.Figure]] = [
        (
            "Equity and drawdown",
            equity_figure(
                result.equity, benchmark=bench, init_cash=result.capital, log_scale=_grows_tenfold(result, bench)
            ),
        ),
        ("Monthly returns", monthly_returns_figure(result.equity, init_cash=result.capital, title=" ")),
        (
            "Rolling Sharpe",
            rolling_sharpe_figure(
                result.equity,
                timeframe=result.timeframe,
                benchmark=bench,
                init_cash=result.capital,
                title="90-day window",
            ),
        ),
    ]
    shown = result.symbols if len(result.symbols) <= MAX_CANDLE_CHARTS else result.symbols[:1]
    for sym in shown:
        figures.append((f"{sym}: trades on the price", result.plot_candles(sym)))
    charts = "\n".join(f"<h2>{html.escape(label)}</h2>\n{_figure_html(fig)}" for label, fig in figures)
    if len(shown) < len(result.symbols):
        charts += (
            f'<p class="note">{len(result.symbols)} symbols: the price chart shows the first; '
            "result.plot_candles(symbol) draws any other.</p>"
        )
    body = "\n".join(
        [
            _header(stats, name),
            _cards(stats),
            '<h2>Statistics</h2><div class="columns">',
            stats.to_html(),
            "</div>",
            charts,
            "<h2>Trades</h2>",
            _trades_html(result),
        ]
    )
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(name)}: backtest report</title>{PAGE_STYLE}{STYLE}"
        f'<script type="text/javascript">{get_plotlyjs()}</script></head>'
        f"<body><main>\n{body}\n</main></body></html>\n"
    )


def write_tearsheet(
    result: BacktestResult, path: str | Path, *, title: str | None = None, stats: Stats | None = None
) -> Path:
    """Write :func:`tearsheet_html` to ``path`` atomically; returns the path."""
    target = Path(path)
    write_bytes_atomic(tearsheet_html(result, title=title, stats=stats).encode("utf-8"), target)
    return target


def _grows_tenfold(result: BacktestResult, bench: pl.DataFrame) -> bool:
    """A curve that spans ten times its low reads better on a log axis (early years stay visible)."""
    spans = [equity_frame(frame)["equity"].to_numpy() for frame in (result.equity, bench)]
    return any(float(np.nanmax(e)) > 10 * float(np.nanmin(e)) > 0 for e in spans)  # NaN skipped, as polars does


def _figure_html(fig: go.Figure) -> str:
    return fig.to_html(full_html=False, include_plotlyjs=False, config={"displaylogo": False, "responsive": True})


def _header(stats: Stats, name: str) -> str:
    date_only = timeframe_ms(stats.timeframe) >= DAY_MS
    period = (
        f"{fmt.when(stats.start_ms, date_only=date_only)} to {fmt.when(stats.end_ms, date_only=date_only)}"
        f" UTC ({fmt.days(stats.days)}, {stats.bars:,} bars)"
    )
    lines = [
        f"<h1>{html.escape(name)}</h1>",
        f'<p class="meta"><b>symbols</b> {html.escape(", ".join(stats.symbols))} · <b>timeframe</b> '
        f"{html.escape(stats.timeframe)} · <b>period</b> {html.escape(period)}</p>",
        f'<p class="meta"><b>sizing</b> {html.escape(stats.sizing)}</p>',
        '<p class="meta"><b>benchmark</b> buy and hold of the same symbols, equal weight, same capital, '
        "fee and slippage</p>",
    ]
    if stats.short_sample:
        lines.append(
            f'<p class="note">{fmt.days_under(stats.days)} is shorter than {stats.min_days:g} days: '
            "annualised figures (CAGR, volatility, Sharpe, Sortino, Calmar) are not shown.</p>"
        )
    return "\n".join(lines)


def _cards(stats: Stats) -> str:
    s, b = stats.strategy, stats.benchmark

    def annual(v, how):  # the note above the cards says why
        return "n/a" if stats.short_sample else how(v)

    cards = [
        ("total return", fmt.signed_pct(s.total_return), fmt.signed_pct(b.total_return) if b else "-"),
        ("CAGR", annual(s.cagr, fmt.signed_pct), annual(b.cagr, fmt.signed_pct) if b else "-"),
        ("Sharpe", annual(s.sharpe, fmt.ratio), annual(b.sharpe, fmt.ratio) if b else "-"),
        ("max drawdown", fmt.pct(s.max_drawdown), fmt.pct(b.max_drawdown) if b else "-"),
        ("trades", f"{s.trades:,}", ""),
        ("win rate", fmt.pct(s.win_rate, 1), ""),
    ]
    items = "".join(
        f'<div class="card"><div class="label">{html.escape(label)}</div><div class="value">{html.escape(value)}'
        f'</div><div class="bench">{"buy &amp; hold " + html.escape(bench) if bench else "&nbsp;"}</div></div>'
        for label, value, bench in cards
    )
    return f'<div class="cards">{items}</div>'


def _trades_html(result: BacktestResult) -> str:
    if result.trades.height == 0:
        return "<p>No trades.</p>"
    ledger = trade_list(result.trades, timeframe=result.timeframe)
    shown = ledger.head(MAX_TRADE_ROWS)
    frame = pl.DataFrame(
        {
            "#": [str(i + 1) for i in range(shown.height)],
            "symbol": shown["symbol"],
            "side": shown["side"],
            "entry (UTC)": [fmt.when(int(v)) for v in shown["entry_ts"]],
            "exit (UTC)": [
                fmt.when(int(v)) + (" (open)" if o else "")
                for v, o in zip(shown["exit_ts"], shown["is_open"], strict=True)
            ],
            "entry price": [fmt.money(v) for v in shown["entry_price"]],
            "exit price": [fmt.money(v) for v in shown["exit_price"]],
            "qty": [f"{v:,.6g}" for v in shown["qty"]],
            "return": [fmt.signed_pct(v) for v in shown["return"]],
            "pnl": [fmt.money(v) for v in shown["pnl"]],
            "fees": [fmt.money(v) for v in shown["fees"]],
            "duration": [fmt.days(v) for v in shown["duration_days"]],
            "exit reason": shown["exit_reason"],
        }
    )
    note = (
        f"<p>First {MAX_TRADE_ROWS:,} of {ledger.height:,} trades; "
        "<code>tradeloop backtest ... --export trades.csv</code> writes them all.</p>"
        if ledger.height > MAX_TRADE_ROWS
        else f"<p>{ledger.height:,} trades.</p>"
    )
    return f'{note}<div class="scroll">{frame_html(frame, text=("symbol", "side", "exit reason"))}</div>'
