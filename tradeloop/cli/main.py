"""Entry point of the ``tradeloop`` command.

Exit codes: 0 success, 1 unexpected error, 2 bad option or setting, 3 data error
(validation, conflict, missing series), 4 exchange/network error, 5 backtest error,
6 model/registry error (missing, tampered, refused), 7 research notebook failed,
8 live engine error (session state, broker, feed), 15 backup or restore failed.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Annotated

import polars as pl
import typer
from rich.progress import Progress, SpinnerColumn, TextColumn

from tradeloop.cli import (
    arbitrage_cmd,
    backtest_cmd,
    backup_cmds,
    data_cmds,
    identity_cmds,
    live_cmds,
    market_data_cmd,
    models_cmds,
    up_cmd,
    worker_cmd,
)
from tradeloop.cli.common import REPO, console, fmt_num, handle_errors, lake_from_settings
from tradeloop.cli.tables import FitTable
from tradeloop.demo import run_demo
from tradeloop.errors import ConfigError
from tradeloop.logs import configure_logging
from tradeloop.settings import get_settings

app = typer.Typer(
    help="tradeloop: research-to-production crypto trading. Start with `tradeloop demo`.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.callback()
@handle_errors
def _logs(ctx: typer.Context) -> None:
    """Every command logs as TRADELOOP_LOG_FORMAT / TRADELOOP_LOG_FILE say (tradeloop.logs); with
    neither set each command keeps its own readable lines."""
    settings = get_settings()
    if settings.log_format == "json" or settings.log_file is not None:
        configure_logging(settings, service=ctx.invoked_subcommand or "cli")


app.add_typer(data_cmds.app, name="data")
app.add_typer(models_cmds.app, name="models")
app.add_typer(live_cmds.app, name="live")
app.add_typer(market_data_cmd.app, name="market-data")
app.add_typer(arbitrage_cmd.app, name="arbitrage")
app.add_typer(identity_cmds.users, name="users")
app.add_typer(identity_cmds.keys, name="keys")
app.add_typer(backup_cmds.app, name="backup")
app.command()(up_cmd.up)
app.command()(backtest_cmd.backtest)
app.command()(worker_cmd.worker)

METRIC_COLUMNS = [
    ("total_return", True),
    ("cagr", True),
    ("sharpe", False),
    ("sortino", False),
    ("calmar", False),
    ("max_drawdown", True),
    ("trades", False),
    ("win_rate", True),
    ("profit_factor", False),
    ("exposure", True),
]


#: left out first when the terminal is narrow (least important last)
OPTIONAL_METRICS = ["max_drawdown", "trades", "cagr", "win_rate", "exposure", "profit_factor", "calmar", "sortino"]


ANNUALISED = frozenset({"cagr", "sharpe", "sortino", "calmar"})
MIN_DAYS = 30.0  # shorter: annualised figures mean nothing (tradeloop.performance.stats)


def _metrics_table(title: str, frame: pl.DataFrame, keys: list[str], *, wide: bool = False) -> None:
    tbl = FitTable(title, keys + [name for name, _ in METRIC_COLUMNS], optional=OPTIONAL_METRICS)
    short = []
    for row in frame.iter_rows(named=True):
        too_short = row.get("days") is not None and row["days"] < MIN_DAYS
        if too_short:
            short.append(f"{row['series']} ({row['days']:.3g} day{'' if row['days'] == 1 else 's'})")
        tbl.add_row(
            *[str(row[k]) for k in keys],
            *["n/a*" if too_short and name in ANNUALISED else fmt_num(row[name], pct) for name, pct in METRIC_COLUMNS],
        )
    tbl.print(console, wide=wide)
    if short:
        console.print(
            f"* n/a: {', '.join(sorted(set(short)))} cover less than {MIN_DAYS:g} days; annualised "
            "figures (CAGR, Sharpe, Sortino, Calmar) of so short a sample mean nothing",
            highlight=False,
        )


@app.command()
@handle_errors
def demo(
    wide: Annotated[bool, typer.Option("--wide", help="Every metric column, however wide the terminal")] = False,
) -> None:
    """The main job on the bundled real sample: import, features, backtests, metrics."""
    started = time.perf_counter()
    lake = lake_from_settings()
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), console=console, transient=True) as progress:
        task = progress.add_task("importing the bundled sample", total=None)
        report = run_demo(lake, on_step=lambda what: progress.update(task, description=f"backtesting {what}"))
    console.print(f"lake: {lake.root} ({report.imported:,} new candles imported)")
    console.print(
        f"features: {len(report.feature_columns)} per bar over {report.feature_rows:,} bars: "
        + ", ".join(report.feature_columns),
        highlight=False,
    )
    _metrics_table(
        "Backtests: next-open fills, 0.1% fee/side, 5 bp slippage, full equity per symbol",
        report.metrics,
        ["strategy", "series"],
        wide=wide,
    )
    console.print(f"done in {time.perf_counter() - started:.1f}s")


def main() -> None:  # pragma: no cover - console-script shim
    app()


@app.command()
@handle_errors
def dashboard(
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1")] = 8501,
    host: Annotated[str, typer.Option(help="Address to listen on")] = "127.0.0.1",
) -> None:
    """Open the Streamlit dashboard (read-only): sessions, performance, champion, data health.
    Without an identity provider (TRADELOOP_OIDC_ISSUER) it is one operator's tool: loopback only."""
    script = REPO / "app" / "dashboard.py"
    if not script.exists():
        raise ConfigError(f"{script} is missing: run tradeloop from a checkout of the repository")
    if host not in ("127.0.0.1", "localhost", "::1") and not get_settings().oidc_issuer:
        raise ConfigError(
            f"--host {host}: without sign-in the dashboard shows every session to whoever reaches it, so it "
            "listens on 127.0.0.1 only; set TRADELOOP_OIDC_ISSUER (README: Single sign-on) to serve a team"
        )
    console.print(f"dashboard on http://{host}:{port}")
    os.execvp(
        sys.executable,
        [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            str(script),
            "--server.address",
            host,
            "--server.port",
            str(port),
            "--server.headless",
            "true",
            "--browser.gatherUsageStats",
            "false",
            "--client.toolbarMode",
            "viewer",
        ],
    )
