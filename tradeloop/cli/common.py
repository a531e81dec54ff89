"""Shared CLI plumbing: console, error-to-exit-code mapping, lake from settings, time parsing."""

from __future__ import annotations

import functools
import math
import os
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from tradeloop.data import CandleLake
from tradeloop.errors import ConfigError, TradeloopError
from tradeloop.logs import configure_logging
from tradeloop.performance import format as fmt
from tradeloop.settings import get_settings

REPO = Path(__file__).resolve().parents[2]  # the checkout: app/, notebooks/, workspace.yaml live here


def _width(stream) -> int | None:
    """The terminal's width on a terminal; otherwise COLUMNS when set, else 180 (wide tables
    stay readable when output goes to a file or a CI log)."""
    if stream.isatty():
        return None
    columns = os.environ.get("COLUMNS", "")
    return int(columns) if columns.isdigit() and int(columns) >= 40 else 180


console = Console(width=_width(sys.stdout))
err_console = Console(stderr=True, width=_width(sys.stderr))
P = ParamSpec("P")
R = TypeVar("R")


DAGSTER_YAML = """# written by tradeloop on first use; edit freely (it is never overwritten)
nux:
  enabled: false        # no "join the community" pop-up on the first start of the UI
telemetry:
  enabled: false        # nothing leaves this machine
"""


def dagster_home() -> Path:
    """The Dagster instance folder shared by ``pipelines.run`` and ``dagster dev``
    (``Settings.dagster_dir``), created on first use with a ``dagster.yaml``."""
    home = get_settings().dagster_dir
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text(DAGSTER_YAML)
    return home


def handle_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Print a tradeloop error in one red line and exit with its code (see tradeloop.errors)."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except TradeloopError as exc:
            # escaped: a message is text, and "[...]" in it must print, not style
            err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
            raise typer.Exit(code=exc.exit_code) from None

    return wrapper


def lake_from_settings() -> CandleLake:
    settings = get_settings()
    configure_logging(settings, service="cli")
    return CandleLake(settings.lake_dir, quarantine_root=settings.quarantine_dir)


def parse_time(value: str, *, field: str) -> int:
    """ISO date/time (UTC when no zone) or epoch milliseconds -> epoch ms. All digits and under
    12 of them (before 1973 as epoch ms) is refused: ``20240101`` is a compact date, not 1970."""
    if value.isascii() and value.isdigit():
        if len(value) < 12:
            guess = f"{value[:4]}-{value[4:6]}-{value[6:]}" if len(value) == 8 else "2024-01-31"
            raise ConfigError(
                f"{field}={value} reads as epoch milliseconds ({fmt_ts(int(value))} UTC); write a "
                f"date in ISO form, e.g. {guess}, or epoch milliseconds (13 digits, e.g. "
                "1704067200000)"
            )
        return int(value)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ConfigError(
            f"{field}={value!r} is not a time; use an ISO date like 2024-01-31 or 2024-01-31T12:00, "
            "or epoch milliseconds"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def fmt_ts(ms: int | None) -> str:
    """``2024-01-31 12:00`` (UTC); a time no calendar can show prints as its epoch ms."""
    return fmt.when(ms)


def fmt_num(value: object, pct: bool = False) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        if math.isinf(value):
            return "inf"
        text = f"{value:.1%}" if pct else f"{value:,.2f}"
        return text[1:] if text.startswith("-") and not text.strip("-0.,%") else text  # no "-0.00"
    return str(value)


def table(title: str, columns: list[str], *, left: tuple[str, ...] = ()) -> Table:
    """Numbers right-aligned; text columns (``left``, and the usual names) left-aligned."""
    tbl = Table(title=title, header_style="bold", title_justify="left")
    for col in columns:
        tbl.add_column(col, justify="left" if col in {"strategy", "series", "rule", "file", *left} else "right")
    return tbl
