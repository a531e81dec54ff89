"""``tradeloop live health NAME``: is session NAME's engine alive? For a container's health check,
a supervisor's or a monitor's probe, and ``tradeloop up``.

Exit 0 (healthy) when the session is stored ``running`` or ``paused`` and its engine's heartbeat
(``sessions.heartbeat_at``: every bar, and every 30 s between bars) is at most ``--max-age``
seconds old; exit 1 (unhealthy) otherwise, whatever the reason: a stale or cleared heartbeat (a
crashed, hung or exited engine), a session that is stopped, finished or unknown, an operational
database that does not answer within ``--timeout``. One line says why. It only reads: no
migration, no lock, nothing written (a SQLite file that is not there is not made). Only a bad
setting exits otherwise (2, naming it), as every command does.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

from tradeloop.cli.common import console, err_console, fmt_ts
from tradeloop.ops.status import STALE_AFTER_S, session_status
from tradeloop.settings import get_settings

HEALTHY = ("running", "paused")


def engine_health(
    name: str, *, max_age_s: float = STALE_AFTER_S, timeout_s: float = 5.0, database_url: str | None = None
) -> tuple[bool, str]:
    """(healthy, why) of session ``name``'s engine, read from the operational database
    (``database_url``, default the settings') by the module rules."""
    from sqlalchemy import make_url, select

    from tradeloop.ops import TradingSession, connect
    from tradeloop.ops.models import utcnow

    url = make_url(database_url or get_settings().effective_database_url)
    if url.get_backend_name() == "sqlite" and url.database and not Path(url.database).exists():
        return False, f"no operational database at {url.database} (no engine has run here)"
    try:
        engine = connect(url.render_as_string(hide_password=False), connect_timeout_s=timeout_s)
        try:
            with engine.connect() as conn:
                row = conn.execute(
                    select(TradingSession.status, TradingSession.heartbeat_at, TradingSession.last_bar_ts).where(
                        TradingSession.name == name
                    )
                ).first()
        finally:
            engine.dispose()
    except Exception as exc:  # noqa: BLE001 - any failure to read is "unhealthy", said in one line
        return False, f"the operational database did not answer: {type(exc).__name__}: {str(exc).splitlines()[0]}"
    if row is None:
        return False, f"no session named {name!r}"
    stored, heartbeat_at, last_bar_ts = row
    now = utcnow()
    status = session_status(stored, heartbeat_at, now=now, stale_after_s=max_age_s)
    age = _age_s(heartbeat_at, now)
    beat = "no heartbeat (no engine runs it)" if age is None else f"heartbeat {age:.0f} s ago"
    why = f"session {name!r}: {status}, {beat}, last bar {fmt_ts(last_bar_ts)}"
    if status == "stale" and age is not None:
        why += f" (stale after {max_age_s:g} s)"
    return status in HEALTHY, why


def _age_s(heartbeat_at: datetime | None, now: datetime) -> float | None:
    if heartbeat_at is None:
        return None
    if heartbeat_at.tzinfo is None:  # SQLite: naive, written in UTC
        heartbeat_at = heartbeat_at.replace(tzinfo=now.tzinfo)
    return max(0.0, (now - heartbeat_at).total_seconds())


def health(
    name: Annotated[str, typer.Argument(help="Session name")],
    max_age: Annotated[
        float,
        typer.Option(min=1, help="Seconds without a heartbeat before the engine counts as dead (default 180)"),
    ] = STALE_AFTER_S,
    timeout: Annotated[float, typer.Option(min=0.1, help="Seconds to wait for the operational database")] = 5.0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing; the exit code says it")] = False,
) -> None:
    """Exit 0 when session NAME's engine is alive (fresh heartbeat), 1 when not: for health checks."""
    try:
        healthy, why = engine_health(name, max_age_s=max_age, timeout_s=timeout)
    except Exception as exc:  # noqa: BLE001 - whatever went wrong: unhealthy, said in one line
        healthy, why = False, f"{type(exc).__name__}: {exc}"
    if not quiet:
        (console if healthy else err_console).print(why, highlight=False, markup=False, soft_wrap=True)
    raise typer.Exit(code=0 if healthy else 1)
