"""``tradeloop data``: import, ingest and inspect candles."""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeRemainingColumn

from tradeloop.cli.common import (
    console,
    err_console,
    fmt_ts,
    handle_errors,
    lake_from_settings,
    parse_time,
    table,
)
from tradeloop.cli.tables import FitTable
from tradeloop.data import SeriesKey
from tradeloop.data.importer import import_file, sample_files
from tradeloop.data.sql import LakeSQL
from tradeloop.errors import ConfigError
from tradeloop.settings import get_settings

app = typer.Typer(help="Import, download and inspect market candles in the lake.", no_args_is_help=True)


def _advance(progress: Progress, task: TaskID, done: int, total: int) -> None:
    progress.update(task, completed=done, total=total)


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    )


@app.command("import")
@handle_errors
def import_cmd(
    paths: Annotated[list[Path] | None, typer.Argument(help="Parquet/CSV files; none = the bundled sample")] = None,
    exchange: Annotated[str | None, typer.Option(help="Exchange id, when file names don't say it")] = None,
    symbol: Annotated[str | None, typer.Option(help="Symbol (BTC/USDT or BTC-USDT)")] = None,
    timeframe: Annotated[str | None, typer.Option(help="Timeframe, e.g. 1h")] = None,
    quarantine: Annotated[bool, typer.Option(help="Set bad rows aside instead of failing")] = False,
    on_conflict: Annotated[str, typer.Option(help="error | keep | replace, for candles already stored")] = "error",
) -> None:
    """Import candle files (columns ts, open, high, low, close, volume) into the lake.

    File names like binance__BTC-USDT__1h.parquet name their series; otherwise pass
    --exchange, --symbol and --timeframe.
    """
    lake = lake_from_settings()
    files = list(paths) if paths else sample_files()
    explicit = (exchange, symbol, timeframe)
    if any(explicit) and not all(explicit):
        raise ConfigError("--exchange, --symbol and --timeframe go together; give all three or none")
    key = SeriesKey(exchange, symbol, timeframe) if all(explicit) else None  # type: ignore[arg-type]
    tbl = table("Imported", ["file", "series", "added", "unchanged", "quarantined", "gaps"])
    with _progress() as progress:
        task = progress.add_task("importing", total=len(files))
        for path in files:
            result = import_file(lake, path, key=key, quarantine=quarantine, on_conflict=on_conflict)  # type: ignore[arg-type]
            tbl.add_row(
                path.name,
                result.key.label,
                str(result.added),
                str(result.unchanged),
                str(result.quarantined),
                str(len(result.gaps)),
            )
            if result.quarantine_file:
                rules = ", ".join(f"{r}: {n} row{'s' if n != 1 else ''}" for r, n in result.rule_counts.items())
                console.print(
                    f"[yellow]{result.quarantined} bad row(s) quarantined ({rules}) in "
                    f"{escape(str(result.quarantine_file))}",
                    highlight=False,
                    soft_wrap=True,
                )
            progress.advance(task)
    console.print(tbl)


@app.command()
@handle_errors
def ingest(
    symbols: Annotated[
        list[str], typer.Option("--symbols", "-s", help="Symbols, e.g. BTC/USDT (repeat or comma-separate)")
    ],
    since: Annotated[str, typer.Option(help="Start: ISO date (UTC) or epoch ms")],
    exchange: Annotated[str | None, typer.Option(help="ccxt exchange id (default: TRADELOOP_EXCHANGE)")] = None,
    timeframe: Annotated[str, typer.Option(help="Timeframe, e.g. 1m, 1h, 1d")] = "1h",
    until: Annotated[str | None, typer.Option(help="End (default: now)")] = None,
) -> None:
    """Download candles through ccxt; resumes after the last stored candle."""
    from tradeloop.data.exchanges import make_exchange  # ccxt is slow to import: only here
    from tradeloop.data.ingest import CandleIngestor
    from tradeloop.retry import RetryPolicy

    settings = get_settings()
    lake = lake_from_settings()
    client = make_exchange(
        exchange or settings.exchange, timeout_s=settings.http_timeout_s, api_url=settings.exchange_api_url
    )
    ingestor = CandleIngestor(client, lake, retry=RetryPolicy(max_attempts=settings.http_max_retries + 1))
    wanted = [s for item in symbols for s in item.split(",") if s.strip()]
    start = parse_time(since, field="--since")
    end = parse_time(until, field="--until") if until else None
    tbl = table("Ingested", ["series", "added", "first", "last"])
    with _progress() as progress:
        for sym in wanted:
            task = progress.add_task(sym, total=None)
            result = ingestor.ingest(
                sym,
                timeframe,
                since=start,
                until=end,
                progress=functools.partial(_advance, progress, task),
            )
            tbl.add_row(result.key.label, str(result.added), fmt_ts(result.first_ts), fmt_ts(result.last_ts))
    console.print(tbl)


@app.command()
@handle_errors
def status(
    exchange: Annotated[str | None, typer.Option(help="Only this exchange")] = None,
    show_gaps: Annotated[int, typer.Option(help="List up to this many gaps per series")] = 0,
    wide: Annotated[bool, typer.Option("--wide", help="Every column, however wide the terminal")] = False,
) -> None:
    """Coverage and gaps of every stored series."""
    lake = lake_from_settings()
    keys = [k for k in lake.list_series() if exchange in (None, k.exchange)]
    skipped = lake.invalid_series_dirs()
    if not keys and not skipped:
        console.print(f"no candles stored under {lake.root}; run `tradeloop data import` first")
        raise typer.Exit(code=0)
    tbl = FitTable(
        f"Lake {lake.root}",
        ["series", "rows", "first", "last", "gaps", "missing", "coverage", "invalid"],
        optional=["coverage", "gaps", "missing", "rows", "invalid"],
    )
    gap_lines, problems = [], []
    with LakeSQL(lake, keys=keys, now_ms=lake.clock(), strict=False) as sql:  # the lake's clock: in_future
        statuses = sql.status()
    for key, st in statuses.items():
        tbl.add_row(
            key.label,
            f"{st.rows:,}",
            fmt_ts(st.first_ts),
            fmt_ts(st.last_ts),
            str(len(st.gaps)),
            f"{st.missing:,}",
            f"{st.coverage:.2%}",
            f"{sum(st.invalid.values()):,}",
        )
        gap_lines += [
            f"{key.label}: {fmt_ts(g.start)} -> {fmt_ts(g.end)} ({g.missing} missing)" for g in st.gaps[:show_gaps]
        ]
        if st.invalid:
            rules = ", ".join(f"{r}: {n} row{'s' if n != 1 else ''}" for r, n in st.invalid.items())
            problems.append(
                f"{key.label}: stored rows break the import rules ({rules}); readers leave them "
                "out (the live replay feed skips in_future ones); to clean up, move the period's "
                "file out of the lake and re-import its good rows"
            )
        problems += [f"{key.label}: {why}" for _, why in st.unreadable]
    tbl.print(console, wide=wide)
    for line in gap_lines:
        console.print(line, highlight=False)
    problems += [f"skipped folder {path}: {why}" for path, why in skipped]
    for line in problems:
        console.print(f"[yellow]warning:[/] {escape(line)}", highlight=False, soft_wrap=True)


FORMATS = ("table", "csv", "json")


@app.command()
@handle_errors
def query(
    sql: Annotated[
        str,
        typer.Argument(
            help='One SELECT over the lake\'s views, e.g. "SELECT symbol, count(*) FROM candles GROUP BY symbol"'
        ),
    ],
    fmt: Annotated[str, typer.Option("--format", help="table | csv | json")] = "table",
    limit: Annotated[int, typer.Option(help="Print at most this many rows; 0 = all")] = 100,
) -> None:
    """Run read-only SQL (DuckDB) over the lake.

    Views: `candles` (exchange, symbol, timeframe, ts, open, high, low, close, volume) and one
    per series named exchange_symbol_timeframe, e.g. coinbase_btc_usd_4h (ts in epoch ms UTC:
    epoch_ms(ts) gives a timestamp). They hold the candles readers use: bad stored rows are
    left out (lake_rows.candles lists every row with its file and broken rule).
    """
    if fmt not in FORMATS:
        raise ConfigError(f"--format={fmt!r} is not one of {', '.join(FORMATS)}")
    if limit < 0:
        raise ConfigError(f"--limit={limit} is negative; give a row count, or 0 for every row")
    with LakeSQL(lake_from_settings(), strict=False) as lake_sql:
        for damaged in lake_sql.unreadable:
            err_console.print(f"[yellow]warning:[/] left out {escape(damaged.reason)}", highlight=False, soft_wrap=True)
        frame = lake_sql.query(sql, limit=limit + 1 if limit else None)
    more = bool(limit) and frame.height > limit
    frame = frame.head(limit) if more else frame
    if fmt == "csv":
        sys.stdout.write(frame.write_csv())
    elif fmt == "json":
        sys.stdout.write(frame.write_json() + "\n")
    else:
        tbl = table(
            f"{frame.height:,} row{'s' if frame.height != 1 else ''}" + (" (more not shown)" if more else ""),
            frame.columns,
        )
        for row in frame.iter_rows():
            tbl.add_row(*(escape(_cell(v)) for v in row))
        console.print(tbl)
    if more:
        err_console.print(f"showing the first {limit:,} rows; --limit 0 prints them all", highlight=False)


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    return str(value)
