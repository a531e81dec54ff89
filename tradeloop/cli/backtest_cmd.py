"""``tradeloop backtest``: one strategy on stored series, its stats beside buy and hold, and on
request an HTML report (``--report``), the trades (``--export``) and a date range (``--from``/``--to``).

Date range rules: dates are ISO and UTC; ``--from`` includes its bar; ``--to`` given as a
date includes that whole day (``--to 2024-06-30`` keeps the bars opening on June 30), given
as a time includes bars opening up to it. Signals are computed on the whole stored history
and then cut to the range, so indicators start warm: the first bar in range can trade.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import polars as pl
import typer
from pydantic import ValidationError
from rich.markup import escape
from rich.table import Table

from tradeloop.backtest import BacktestConfig, run_backtest
from tradeloop.cli.common import console, fmt_ts, handle_errors, lake_from_settings, parse_time
from tradeloop.cli.tables import FitTable
from tradeloop.data import SeriesKey
from tradeloop.errors import ConfigError, DataError, config_error
from tradeloop.performance import Stats, result_stats
from tradeloop.performance.format import days_under
from tradeloop.performance.trades import export_format, export_trades
from tradeloop.strategies import STRATEGIES, get_strategy

DAY_MS = 86_400_000
REPORT_SUFFIXES = (".html", ".htm")
# per-symbol columns a narrow terminal may leave out, the least important last
SYMBOL_OPTIONAL = (
    "win rate",
    "max drawdown",
    "sharpe",
    "pnl",
    "avg trade",
    "in market",
    "best",
    "worst",
    "avg duration",
)


@handle_errors
def backtest(
    strategy: Annotated[str, typer.Argument(help=f"One of: {', '.join(sorted(STRATEGIES))}")],
    series: Annotated[list[str], typer.Option("--series", help="exchange:SYMBOL:timeframe (repeatable)")],
    fee: Annotated[float, typer.Option(help="Fee per side, fraction of notional")] = 0.001,
    slippage: Annotated[float, typer.Option(help="Adverse slippage, fraction of price")] = 0.0,
    fraction: Annotated[float, typer.Option(help="Share of equity per new position")] = 1.0,
    stop_loss: Annotated[float | None, typer.Option(help="Stop-loss, fraction from entry")] = None,
    take_profit: Annotated[float | None, typer.Option(help="Take-profit, fraction from entry")] = None,
    trailing_stop: Annotated[float | None, typer.Option(help="Trailing stop, fraction from peak")] = None,
    shared_cash: Annotated[bool, typer.Option(help="One portfolio across the series")] = False,
    param: Annotated[list[str] | None, typer.Option(help="Strategy parameter name=value (repeatable)")] = None,
    start: Annotated[str | None, typer.Option("--from", help="First day (ISO, UTC), e.g. 2024-01-01")] = None,
    end: Annotated[str | None, typer.Option("--to", help="Last day, included (ISO, UTC), e.g. 2024-06-30")] = None,
    report: Annotated[Path | None, typer.Option(help="Write a self-contained HTML report here (.html)")] = None,
    export: Annotated[Path | None, typer.Option(help="Write the trades here: .csv or .parquet")] = None,
    wide: Annotated[bool, typer.Option("--wide", help="Every per-symbol column, however wide the terminal")] = False,
) -> None:
    """Backtest one strategy on stored series and print its stats beside buy and hold.

    Strategy parameters are checked by the strategy's own schema (--param fast=10).
    """
    strat = get_strategy(strategy, **_params(param or []))
    config = _config(
        fee_rate=fee,
        slippage=slippage,
        fraction=fraction,
        stop_loss=stop_loss,
        take_profit=take_profit,
        trailing_stop=trailing_stop,
        cash_sharing=shared_cash,
    )
    if export is not None:
        export_format(export, option="--export")
        _writable(export, option="--export")
    if report is not None:
        if report.suffix.lower() not in REPORT_SUFFIXES:
            raise ConfigError(
                f"--report={str(report)!r} is an HTML report: end the file name in .html, e.g. report.html"
            )
        _writable(report, option="--report")
    lo, hi = _range(start, end)
    keys = _keys(series)
    candles = lake_from_settings().read_many(keys)
    signals = strat.signals(candles, by="symbol")
    in_range = signals.filter(pl.col("ts").is_between(lo, hi, closed="left")) if (start or end) else signals
    if in_range.height == 0:
        raise DataError(_empty_range_message(candles, keys, start=start, end=end))
    present = set(in_range["symbol"].unique().to_list())
    result = replace(run_backtest(in_range, config, timeframe=keys[0].timeframe), strategy=strat.describe())
    stats = result_stats(result)
    print_stats(stats, series=", ".join(k.label for k in keys if k.symbol in present), wide=wide)
    for key in keys:
        if key.symbol not in present:
            where = _asked(start, end) or "the lake"
            console.print(
                f"[yellow]note:[/] {escape(key.label)} has no bars in {escape(where)}: left out of the backtest",
                highlight=False,
            )
    if export is not None:
        with _writing(export, option="--export"):
            written = export_trades(result.trades, export, timeframe=result.timeframe)
        console.print(f"trades: {written} ({result.trades.height:,} rows)", highlight=False)
    if report is not None:
        from tradeloop.performance.tearsheet import write_tearsheet  # plotly loads only when a report is asked

        with _writing(report, option="--report"):
            written = write_tearsheet(result, report, stats=stats)
        console.print(f"report: {written}", highlight=False)


def _writable(path: Path, *, option: str) -> None:
    """Refuse, before the backtest runs, a file that cannot be written: a folder, a parent that is
    a file, or a folder without write permission (missing folders are created)."""
    if path.is_dir():
        raise ConfigError(
            f"{option}={str(path)!r} is a folder; give a file name in it, e.g. "
            f"{path / ('report.html' if option == '--report' else 'trades.csv')}"
        )
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise ConfigError(f"{option}={str(path)!r}: {parent} is a file, not a folder; write the file elsewhere")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(
            f"{option}={str(path)!r}: no permission to write in {parent}; choose a folder you can write to"
        )


@contextmanager
def _writing(path: Path, *, option: str) -> Iterator[None]:
    try:
        yield
    except OSError as exc:  # a disk full, a folder removed or made read-only while the backtest ran
        raise ConfigError(
            f"{option}={str(path)!r} could not be written ({exc.strerror or exc}); choose another path"
        ) from None


def _params(items: list[str]) -> dict[str, str]:
    params: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        name, value = name.strip(), value.strip()
        if not sep or not name or not value:
            raise ConfigError(f"--param {item!r} is not name=value; write e.g. --param fast=10")
        if name in params:
            raise ConfigError(f"--param {name} is given twice ({params[name]!r}, {value!r}); give it once")
        params[name] = value  # text: the strategy's schema converts and checks it
    return params


def _config(**options: object) -> BacktestConfig:
    try:
        return BacktestConfig(**options)
    except ValidationError as exc:
        names = {"fee_rate": "--fee", "cash_sharing": "--shared-cash"}
        names |= {f: "--" + f.replace("_", "-") for f in options if f not in names}
        raise config_error(exc, what="backtest", model=BacktestConfig, names=names) from None


def _keys(series: list[str]) -> list[SeriesKey]:
    keys = []
    for item in series:
        parts = item.split(":")
        if len(parts) != 3:
            raise ConfigError(f"--series {item!r} is not exchange:SYMBOL:timeframe, e.g. coinbase:BTC-USD:4h")
        keys.append(SeriesKey(*parts))
    if len({k.timeframe for k in keys}) != 1:
        raise ConfigError("--series must share one timeframe in one backtest")
    seen: dict[str, SeriesKey] = {}
    for key in keys:
        other = seen.setdefault(key.symbol, key)
        if other is key:
            continue
        if other == key:
            raise ConfigError(f"--series {key.label} is given twice; give it once")
        raise ConfigError(
            f"--series {other.label} and {key.label} are both {key.symbol}; a backtest trades each "
            "symbol once: keep one exchange per symbol"
        )
    return keys


def _is_date(value: str) -> bool:
    return len(value) == 10 and value[4] == "-" and value[7] == "-"


def _range(start: str | None, end: str | None) -> tuple[int, int]:
    """``[lo, hi)`` in epoch ms from ``--from``/``--to`` (see the module's rules)."""
    lo = parse_time(start, field="--from") if start else -(2**62)
    hi = 2**62
    if end:
        hi = parse_time(end, field="--to") + (DAY_MS if _is_date(end) else 1)
    if start and end and lo >= hi:
        raise ConfigError(
            f"--from {start} is after --to {end}; give --from before --to, e.g. --from 2024-01-01 --to 2024-06-30"
        )
    return lo, hi


def _empty_range_message(candles: pl.DataFrame, keys: list[SeriesKey], *, start: str | None, end: str | None) -> str:
    spans = candles.group_by("exchange", "symbol", "timeframe").agg(first=pl.col("ts").min(), last=pl.col("ts").max())
    covered = "; ".join(
        f"{r['exchange']}:{r['symbol']}:{r['timeframe']} covers {fmt_ts(r['first'])} to {fmt_ts(r['last'])}"
        for r in spans.sort("symbol").iter_rows(named=True)
    )
    return (
        f"no bars of {', '.join(k.label for k in keys)} in {_asked(start, end)} (UTC); "
        f"{covered or 'no candles stored'}: pick dates inside that range"
    )


def _asked(start: str | None, end: str | None) -> str:
    return " ".join(f"{flag} {value}" for flag, value in (("--from", start), ("--to", end)) if value)


def print_stats(stats: Stats, *, series: str, wide: bool = False) -> None:
    """The stats table (strategy beside buy and hold) and the per-symbol table, with rich."""
    console.print(f"[bold]{escape(stats.title)}[/] on {escape(series)}", highlight=False)
    console.print(
        f"sizing: {escape(stats.sizing)}; benchmark: buy and hold of the same symbols, equal weight, "
        "same capital, fee and slippage",
        highlight=False,
    )
    tbl = Table(header_style="bold")
    tbl.add_column("metric", justify="left")
    tbl.add_column("strategy", justify="right", no_wrap=True)
    tbl.add_column("buy & hold", justify="right", no_wrap=True)
    section = None
    for sec, metric, strat, bench in stats.table().iter_rows():
        if sec != section:
            tbl.add_row(f"[bold]{escape(sec)}[/]", "", "")
            section = sec
        tbl.add_row(f"  {escape(metric)}", escape(strat), escape(bench))
    console.print(tbl)
    per = stats.symbols_table()
    sym_tbl = FitTable("per symbol", per.columns, optional=[c for c in SYMBOL_OPTIONAL if c in per.columns])
    for row in per.iter_rows():
        sym_tbl.add_row(*(escape(cell) for cell in row))
    sym_tbl.print(console, wide=wide)
    if stats.short_sample:
        console.print(
            f"[yellow]note:[/] {days_under(stats.days)} is shorter than {stats.min_days:g}: annualised "
            "figures (CAGR, volatility, Sharpe, Sortino, Calmar) are not shown"
        )
