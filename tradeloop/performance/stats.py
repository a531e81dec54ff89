"""``BacktestResult.stats()``: one readable table of a backtest beside buy and hold of its symbols.

Sections: period, exposure, trades, returns, risk, then a per-symbol table. Every number
comes from :func:`~tradeloop.performance.metrics.compute_metrics` (strategy and benchmark
alike, 365-day years), the benchmark from :mod:`tradeloop.performance.benchmark`.

Rules:

* the account is the sum of the portfolios; its capital is ``init_cash`` per portfolio;
* time in market is the share of bars with a position: with shared cash any position, else the
  mean over the portfolios; buy and hold counts the same way from each symbol's first bar;
* trade figures (win rate, profit factor, expectancy, best/worst, duration) count closed
  trades; the trade count includes open ones and says how many;
* a period shorter than ``min_days`` (default 30) is too short to annualise: CAGR,
  volatility, Sharpe, Sortino, Calmar and turnover show ``n/a: 2 days < 30`` instead of a
  number (the raw values stay on ``Stats.strategy`` and ``Stats.benchmark``);
* per symbol, ``return`` is the symbol's pnl over the capital it traded with (the whole
  account with shared cash, so the rows add up to the account's return; its own
  ``init_cash`` otherwise) and ``buy & hold`` is that symbol's share of the benchmark.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from tradeloop.backtest.engine import periods_per_year
from tradeloop.data.schema import timeframe_ms
from tradeloop.errors import ConfigError
from tradeloop.performance import format as fmt
from tradeloop.performance.metrics import PerformanceReport, compute_metrics, trade_stats
from tradeloop.performance.report import result_metrics
from tradeloop.performance.series import equity_frame

if TYPE_CHECKING:
    from tradeloop.backtest.config import BacktestConfig
    from tradeloop.backtest.engine import BacktestResult

DAY_MS = 86_400_000
STRATEGY, BENCHMARK = "strategy", "buy & hold"


@dataclass(frozen=True, kw_only=True)
class Stats:
    """Figures of one backtest and its buy-and-hold benchmark; ``table()`` formats them."""

    title: str
    symbols: tuple[str, ...]
    timeframe: str
    sizing: str
    start_ms: int
    end_ms: int  # the last bar's open time
    bars: int
    days: float  # bars x timeframe
    min_days: float
    strategy: PerformanceReport
    benchmark: PerformanceReport | None
    best_trade: float
    worst_trade: float
    avg_trade_days: float
    per_symbol: pl.DataFrame  # raw numbers, one row per symbol

    @property
    def short_sample(self) -> bool:
        """True when the period is too short for annualised figures to mean anything."""
        return self.days < self.min_days

    def table(self) -> pl.DataFrame:
        """``section, metric, strategy, buy & hold``: every figure as text (percentages as %)."""
        return pl.DataFrame(self._rows(), schema=["section", "metric", STRATEGY, BENCHMARK], orient="row")

    def symbols_table(self) -> pl.DataFrame:
        """The per-symbol table as text."""
        p = self.per_symbol
        cols: dict[str, list[str]] = {
            "symbol": p["symbol"].to_list(),
            "trades": [fmt.count(v) for v in p["trades"]],
            "win rate": [fmt.pct(v, 1) for v in p["win_rate"]],
            "avg trade": [fmt.signed_pct(v) for v in p["avg_trade_return"]],
            "best": [fmt.signed_pct(v) for v in p["best_trade"]],
            "worst": [fmt.signed_pct(v) for v in p["worst_trade"]],
            "avg duration": [fmt.days(v) for v in p["avg_trade_days"]],
            "in market": [fmt.pct(v, 1) for v in p["time_in_market"]],
            "pnl": [fmt.money(v) for v in p["pnl"]],
            "return": [fmt.signed_pct(v) for v in p["return"]],
            BENCHMARK: [fmt.signed_pct(v) for v in p["buy_and_hold"]],
        }
        if "sharpe" in p.columns:
            cols["sharpe"] = ["n/a" if self.short_sample else fmt.ratio(v) for v in p["sharpe"]]
            cols["max drawdown"] = [fmt.pct(v) for v in p["max_drawdown"]]
        return pl.DataFrame(cols)

    def _annual(self, value: float | None, how) -> str:
        return fmt.short_sample(self.days, self.min_days) if self.short_sample else how(value)

    def _rows(self) -> list[tuple[str, str, str, str]]:
        s, b = self.strategy, self.benchmark
        date_only = timeframe_ms(self.timeframe) >= DAY_MS

        def both(section: str, metric: str, field: str, how, *, annual: bool = False) -> tuple[str, str, str, str]:
            shown = (lambda v: self._annual(v, how)) if annual else how
            return section, metric, shown(getattr(s, field)), shown(getattr(b, field)) if b else "-"

        return [
            ("period", "first bar", fmt.when(self.start_ms, date_only=date_only), ""),
            ("period", "last bar", fmt.when(self.end_ms, date_only=date_only), ""),
            ("period", "duration", fmt.days(self.days), ""),
            ("period", "bars", f"{fmt.count(self.bars)} x {self.timeframe}", ""),
            both("exposure", "time in market", "exposure", fmt.pct),
            ("exposure", "turnover per year", self._annual(s.turnover, lambda v: f"{fmt.ratio(v)}x equity"), "-"),
            ("trades", "trades", f"{s.trades:,}" + (f" ({s.open_trades} open)" if s.open_trades else ""), "-"),
            ("trades", "win rate", fmt.pct(s.win_rate, 1), "-"),
            ("trades", "profit factor", fmt.ratio(s.profit_factor), "-"),
            ("trades", "expectancy (pnl per trade)", fmt.money(s.expectancy), "-"),
            ("trades", "avg trade return", fmt.signed_pct(s.avg_trade_return), "-"),
            ("trades", "best trade", fmt.signed_pct(self.best_trade), "-"),
            ("trades", "worst trade", fmt.signed_pct(self.worst_trade), "-"),
            ("trades", "avg duration", fmt.days(self.avg_trade_days), "-"),
            both("returns", "final equity", "final_equity", fmt.money),
            both("returns", "total return", "total_return", fmt.signed_pct),
            both("returns", "CAGR", "cagr", fmt.signed_pct, annual=True),
            both("risk", "volatility (annual)", "volatility", fmt.pct, annual=True),
            both("risk", "Sharpe", "sharpe", fmt.ratio, annual=True),
            both("risk", "Sortino", "sortino", fmt.ratio, annual=True),
            both("risk", "Calmar", "calmar", fmt.ratio, annual=True),
            both("risk", "max drawdown", "max_drawdown", fmt.pct),
            both("risk", "longest drawdown", "max_drawdown_days", fmt.days),
        ]

    def __str__(self) -> str:
        head = f"{self.title}\n{', '.join(self.symbols)} {self.timeframe}; {self.sizing}"
        return "\n\n".join([head, _text_table(self.table(), left=2), "per symbol", _text_table(self.symbols_table())])

    __repr__ = __str__

    def to_html(self) -> str:
        """The two tables as an HTML fragment (JupyterLab shows it; the tearsheet embeds it)."""
        rows, section = [], None
        for sec, metric, strat, bench in self._rows():
            if sec != section:
                rows.append(f'<tr class="tl-section"><th colspan="3">{html.escape(sec)}</th></tr>')
                section = sec
            rows.append(
                f"<tr><td>{html.escape(metric)}</td><td>{html.escape(strat)}</td><td>{html.escape(bench)}</td></tr>"
            )
        main = (
            f'<table class="tl-stats"><thead><tr><th></th><th>{STRATEGY}</th><th>{html.escape(BENCHMARK)}</th>'
            f"</tr></thead><tbody>{''.join(rows)}</tbody></table>"
        )
        caption = html.escape(f"{self.title} · {', '.join(self.symbols)} {self.timeframe} · {self.sizing}")
        return (
            f'<div class="tl-stats-block"><p><b>{caption}</b></p>{main}<p><b>per symbol</b></p>'
            f"{frame_html(self.symbols_table())}</div>"
        )

    def _repr_html_(self) -> str:
        return STYLE + self.to_html()


STYLE = """<style>
.tl-stats, .tl-table {border-collapse: collapse; font: 13px/1.4 system-ui, sans-serif; margin: 4px 0 12px}
.tl-stats td, .tl-stats th, .tl-table td, .tl-table th {padding: 3px 10px; border-bottom: 1px solid #e5e5e5}
.tl-stats td:nth-child(n+2), .tl-table td:nth-child(n+2) {text-align: right; font-variant-numeric: tabular-nums}
.tl-stats thead th, .tl-table thead th {text-align: right; border-bottom: 2px solid #999}
.tl-section th {text-align: left; background: #f3f5f8; text-transform: capitalize}
.tl-stats thead th:first-child, .tl-table thead th:first-child {text-align: left}
.tl-table td.tl-text, .tl-table thead th.tl-text {text-align: left}
</style>"""


def frame_html(frame: pl.DataFrame, *, text: Sequence[str] = ()) -> str:
    """A text frame as a plain HTML table: the first column and the ``text`` columns left-aligned
    (names), the others right (numbers)."""
    cls = [' class="tl-text"' if c in text else "" for c in frame.columns]
    head = "".join(f"<th{k}>{html.escape(c)}</th>" for c, k in zip(frame.columns, cls, strict=True))
    body = "".join(
        "<tr>" + "".join(f"<td{k}>{html.escape(str(v))}</td>" for v, k in zip(row, cls, strict=True)) + "</tr>"
        for row in frame.iter_rows()
    )
    return f'<table class="tl-table"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _text_table(frame: pl.DataFrame, *, left: int = 1) -> str:
    """Columns padded to their widths; the first ``left`` columns left-aligned, numbers right."""
    widths = [max(len(c), *(len(str(v)) for v in frame[c])) if frame.height else len(c) for c in frame.columns]
    lines = ["  ".join(_cell(c, w, i < left) for i, (c, w) in enumerate(zip(frame.columns, widths, strict=True)))]
    for row in frame.iter_rows():
        lines.append("  ".join(_cell(v, w, i < left) for i, (v, w) in enumerate(zip(row, widths, strict=True))))
    return "\n".join(lines)


def _cell(value: object, width: int, left: bool) -> str:
    return str(value).ljust(width) if left else str(value).rjust(width)


def describe_sizing(config: BacktestConfig) -> str:
    """``'100% of equity per position, shared cash, fee 0.10%/side, slippage 0.00%'`` (and stops)."""
    if config.sizing == "vol_target":
        size = f"volatility target {fmt.pct(config.vol_target, 0)}/year (at most {fmt.pct(config.fraction, 0)})"
    else:
        size = f"{fmt.pct(config.fraction, 0)} of equity per position"
    parts = [
        size,
        "shared cash" if config.cash_sharing else f"{fmt.money(config.init_cash)} per symbol",
        f"fee {fmt.pct(config.fee_rate)}/side",
        f"slippage {fmt.pct(config.slippage)}",
    ]
    for name in ("stop_loss", "take_profit", "trailing_stop"):
        value = getattr(config, name)
        if value is not None:
            parts.append(f"{name.replace('_', ' ')} {fmt.pct(value, 1)}")
    return ", ".join(parts)


def result_candles(result: BacktestResult, symbol: str | None = None) -> pl.DataFrame:
    """``ts, symbol, open, high, low, close`` of the bars a backtest simulated (gaps dropped)."""
    prices = result.prices
    if prices is None:
        raise ConfigError("this BacktestResult carries no prices; run it with run_backtest or backtest_strategy")
    if symbol is not None and symbol not in prices.symbols:
        raise ConfigError(f"symbol={symbol!r} was not backtested; pick one of {list(prices.symbols)}")
    picked = [symbol] if symbol is not None else list(prices.symbols)
    parts = []
    for sym in picked:
        j = prices.symbols.index(sym)
        parts.append(
            pl.DataFrame(
                {
                    "ts": prices.ts.astype(np.int64),
                    "symbol": [sym] * len(prices.ts),
                    "open": prices.open[:, j],
                    "high": prices.high[:, j],
                    "low": prices.low[:, j],
                    "close": prices.close[:, j],
                }
            ).filter(pl.col("close").is_not_nan())
        )
    return pl.concat(parts)


def result_stats(result: BacktestResult, *, min_days: float = 30.0) -> Stats:
    """The :class:`Stats` of a backtest (see the module's rules)."""
    if min_days < 0:
        raise ConfigError(f"min_days={min_days} must be zero or more, e.g. 30")
    ppy = periods_per_year(result.timeframe)
    total = equity_frame(result.equity)
    bars = total.height
    if bars == 0:
        raise ConfigError("the backtest has no bars; give it candles (check the date range)")
    strategy = compute_metrics(
        total["equity"].to_numpy(),
        init_cash=result.capital,
        periods_per_year=ppy,
        trades=result.trades,
        bars_in_market=round(float(np.mean(result.bars_in_market))),
        traded_notional=float(np.sum(result.traded_notional)),
    )
    bench_frame = result.benchmark() if result.prices is not None else None
    benchmark = None
    if bench_frame is not None:
        bench_total = equity_frame(bench_frame)["equity"].to_numpy()
        benchmark = compute_metrics(
            bench_total, init_cash=result.capital, periods_per_year=ppy, bars_in_market=_hold_bars_in_market(result)
        )
    bar_days = timeframe_ms(result.timeframe) / DAY_MS
    closed = result.trades.filter(~pl.col("is_open"))
    per_symbol = _per_symbol(result, bench_frame, bars=bars, bar_days=bar_days)
    if not result.config.cash_sharing:
        own = result_metrics(result).select(
            symbol="portfolio", own_return="total_return", sharpe="sharpe", max_drawdown="max_drawdown"
        )
        per_symbol = (
            per_symbol.join(own, on="symbol", how="left")
            .with_columns(pl.col("own_return").alias("return"))
            .drop("own_return")
        )
    ts = total["time"].dt.epoch("ms")
    return Stats(
        title=result.strategy or "backtest",
        symbols=result.symbols,
        timeframe=result.timeframe,
        sizing=describe_sizing(result.config),
        start_ms=int(ts[0]),
        end_ms=int(ts[-1]),
        bars=bars,
        days=bars * bar_days,
        min_days=min_days,
        strategy=strategy,
        benchmark=benchmark,
        best_trade=_or_nan(closed["return"].max()),
        worst_trade=_or_nan(closed["return"].min()),
        avg_trade_days=_or_nan(closed["bars_held"].mean()) * bar_days,
        per_symbol=per_symbol,
    )


def _hold_bars_in_market(result: BacktestResult) -> int:
    """Bars buy and hold spends in the market, counted as the kernel counts the strategy's: with
    shared cash while any symbol is held, else the mean over the portfolios (one per symbol); a
    symbol is held from its first bar on."""
    prices = result.prices
    assert prices is not None
    bars = len(prices.ts)
    has_open = np.isfinite(prices.open)
    held = np.where(has_open.any(axis=0), bars - has_open.argmax(axis=0), 0)
    return int(held.max()) if result.config.cash_sharing else round(float(held.mean()))


def _or_nan(value: object) -> float:
    return math.nan if value is None else float(value)  # type: ignore[arg-type]


def _per_symbol(result: BacktestResult, bench: pl.DataFrame | None, *, bars: int, bar_days: float) -> pl.DataFrame:
    k = len(result.symbols)
    base = result.capital if result.config.cash_sharing else result.config.init_cash
    bench_cash = result.capital / k
    bench_last = dict(bench.group_by("portfolio").agg(pl.col("equity").last()).iter_rows()) if bench is not None else {}
    rows = []
    for sym in result.symbols:
        trades = result.trades.filter(pl.col("symbol") == sym)
        closed = trades.filter(~pl.col("is_open"))
        ts = trade_stats(trades)
        pnl = float(trades["pnl"].sum())
        rows.append(
            {
                "symbol": sym,
                "trades": trades.height,
                "win_rate": ts["win_rate"],
                "avg_trade_return": ts["avg_trade_return"],
                "best_trade": _or_nan(closed["return"].max()),
                "worst_trade": _or_nan(closed["return"].min()),
                "avg_trade_days": _or_nan(closed["bars_held"].mean()) * bar_days,
                "time_in_market": float(trades["bars_held"].sum()) / bars,
                "pnl": pnl,
                "return": pnl / base,
                "buy_and_hold": bench_last[sym] / bench_cash - 1.0 if sym in bench_last else math.nan,
            }
        )
    return pl.DataFrame(rows)
