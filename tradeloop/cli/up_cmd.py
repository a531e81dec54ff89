"""``tradeloop up``: every local service under one process manager (honcho).

JupyterLab, the Dagster UI, the live engine (paper, replaying the lake's recent bars with
the latest champion) and the dashboard, each on 127.0.0.1, and the service API (uvicorn on
``TRADELOOP_API_HOST``:``TRADELOOP_API_PORT``, 127.0.0.1:8000 by default) with its job
worker when ``REDIS_URL`` is set (without Redis the API runs its jobs itself). With Redis the
API runs in two processes (``--api-workers``): they share the rate limits and the job queue
there, and each reads the event streams for its own WebSocket clients; without Redis those
live in the process, so it is one. The table of
addresses is printed last, once every service is ready (the API's ``/ready``: database at the
latest migration, Redis; the engine's heartbeat, ``tradeloop live health``; the worker's
``/metrics``; the others' own health pages), after their start-up chatter.
Ctrl-C (or SIGTERM) stops them all.

Two services start only when given their options, since they talk to the venues: the
market-data service (``--market-data "--exchange binance --symbol BTC-USDT"``: the options of
``tradeloop market-data run``; it needs ``REDIS_URL``) and arbitrage detection
(``--arbitrage "--venue binance --venue kraken"``: those of ``tradeloop arbitrage run``).
Each is ready once its ``/metrics`` answers.

Each process gets what it must not share: the engine and the worker their own
``TRADELOOP_METRICS_PORT`` (``--metrics-port`` and the next one: Prometheus' targets in
``deploy/prometheus``; the market-data service the third after it, 9104, arbitrage the fourth),
the API with several processes an empty ``PROMETHEUS_MULTIPROC_DIR``
(its ``/metrics`` adds them up; removed at exit), and with ``TRADELOOP_LOG_FILE`` set a log
file of its own beside it (``tradeloop-api.log``; the API's processes share theirs, so it is
rotated by logrotate: ``TRADELOOP_LOG_MAX_MB=0``).
"""

from __future__ import annotations

import io
import os
import secrets
import shlex
import shutil
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from tradeloop.cli.common import REPO, console, dagster_home, handle_errors, table
from tradeloop.cli.health_cmd import engine_health
from tradeloop.errors import ConfigError
from tradeloop.research.notebooks import lab_environment
from tradeloop.settings import Settings, get_settings

SERVICES = ("lab", "dagster", "live", "dashboard", "api", "worker")
VENUE_SERVICES = ("market-data", "arbitrage")  # started only when given their options (--market-data, --arbitrage)
METRICS_OFFSET = {"live": 0, "worker": 1, "market-data": 3, "arbitrage": 4}  # from --metrics-port (9103: research)
LIVE_SESSION = "paper"  # the session `live` trades
Probe = str | Callable[[], bool]  # a URL that answers 200 when ready, or a check


RECENT_DAYS = 30.0  # the paper session replays the lake's last month, then follows it


def service_commands(
    *,
    lab: int,
    dagster: int,
    dashboard: int,
    speed: float,
    lab_token: str,
    strategy: str = "sma_cross",
    api_host: str = "127.0.0.1",
    api: int = 8000,
    api_workers: int = 1,
    log_level: str = "INFO",
    market_data: str | None = None,
    arbitrage: str | None = None,
) -> dict[str, tuple[str, str]]:
    """name -> (command line, URL or note). Every command runs from the repository root.
    ``market_data`` / ``arbitrage``: those services' options (a shell-quoted string; None: not run)."""
    py = shlex.quote(sys.executable)
    api_url = f"http://{api_host}:{api}"
    venues: dict[str, tuple[str, str]] = {}
    for name, options, note in (
        ("market-data", market_data, "the venue's closed candles on the bus (feed=bus)"),
        ("arbitrage", arbitrage, "cross-venue opportunities (GET /arbitrage/opportunities)"),
    ):
        if options is not None:
            words = " ".join(shlex.quote(w) for w in _options(options, service=name))
            venues[name] = (f"{py} -m tradeloop {name} run {words}".rstrip(), f"{note}: {options}".rstrip(": "))
    return venues | {  # Lab's root, settings and allow_root come from jupyter/ (lab_environment)
        "lab": (
            f"{py} -m jupyterlab --ip 127.0.0.1 --port {lab} --no-browser --IdentityProvider.token={lab_token}",
            f"http://127.0.0.1:{lab}/lab/tree/notebooks?token={lab_token}",
        ),  # opens on the notebooks
        "dagster": (f"{py} -m dagster dev -w workspace.yaml -h 127.0.0.1 -p {dagster}", f"http://127.0.0.1:{dagster}"),
        "live": (
            f"{py} -m tradeloop live run --name {LIVE_SESSION} --strategy {shlex.quote(strategy)} --follow "
            f"--recent-days {RECENT_DAYS:g} --speed {speed:g}",
            f"paper session 'paper': {strategy}, the lake's last {RECENT_DAYS:g} days after the champion's "
            "training end, then new candles",
        ),
        "dashboard": (f"{py} -m tradeloop dashboard --port {dashboard}", f"http://127.0.0.1:{dashboard}"),
        "api": (
            f"{py} -m uvicorn --factory api.app:create_app --host {shlex.quote(api_host)} --port {api} "
            f"--workers {api_workers} --log-level {log_level.lower()}",
            f"{api_url} (docs: {api_url}/docs)",
        ),
        "worker": (f"{py} -m tradeloop worker", "runs the API's queued backtests and research runs (Redis)"),
    }


def _options(text: str, *, service: str) -> list[str]:
    """The words of a service's options (``--market-data "--exchange binance"``), checked for what
    `up` itself decides."""
    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise ConfigError(f"--{service} {text!r} is not a quoted option list ({exc}); e.g. --{service} "
                          f"\"{_EXAMPLE[service]}\"") from None  # fmt: skip
    if not words or not words[0].startswith("--"):
        raise ConfigError(f"--{service} {text!r}: give `tradeloop {service} run` options, e.g. --{service} "
                          f"\"{_EXAMPLE[service]}\"")  # fmt: skip
    return words


_EXAMPLE = {"market-data": "--exchange binance --symbol BTC-USDT", "arbitrage": "--venue binance --venue kraken"}


@handle_errors
def up(
    lab_port: Annotated[int, typer.Option(help="JupyterLab port")] = 8888,
    dagster_port: Annotated[int, typer.Option(help="Dagster UI port")] = 3000,
    dashboard_port: Annotated[int, typer.Option(help="Dashboard port")] = 8501,
    api_port: Annotated[
        int | None, typer.Option(min=0, max=65535, help="Service API port (default: TRADELOOP_API_PORT, 8000)")
    ] = None,
    api_workers: Annotated[
        int | None,
        typer.Option(min=1, max=16, help="API processes (default: 2 with REDIS_URL, else 1; more needs REDIS_URL)"),
    ] = None,
    speed: Annotated[
        float, typer.Option(help="Replay speed of the paper session (14400: a 4h bar per second)")
    ] = 14400.0,
    only: Annotated[
        list[str] | None, typer.Option(help=f"Start only these ({', '.join(SERVICES + VENUE_SERVICES)}); repeat")
    ] = None,
    metrics_port: Annotated[
        int,
        typer.Option(
            min=0,
            max=65531,
            help="The engine's /metrics port; the worker's is the next, the market-data service's "
            "the third after it, arbitrage's the fourth (0: none)",
        ),
    ] = 9101,
    market_data: Annotated[
        str | None,
        typer.Option(
            help="Also run the market-data service with these `tradeloop market-data run` options, e.g. "
            '"--exchange binance --symbol BTC-USDT" (needs REDIS_URL)'
        ),
    ] = None,
    arbitrage: Annotated[
        str | None,
        typer.Option(
            help="Also run arbitrage detection with these `tradeloop arbitrage run` options, e.g. "
            '"--venue binance --venue kraken"'
        ),
    ] = None,
) -> None:
    """Start JupyterLab, the Dagster UI, the live engine (paper), the dashboard and the API; Ctrl-C stops all."""
    from honcho.manager import Manager
    from honcho.printer import Printer

    settings = get_settings()
    api_port = settings.api_port if api_port is None else api_port
    if api_workers is None:
        api_workers = min(2, os.cpu_count() or 1) if settings.redis_url else 1
    elif api_workers > 1 and not settings.redis_url:
        raise ConfigError(
            f"--api-workers {api_workers} needs REDIS_URL: without Redis the rate limits and the job queue live "
            "in the API's process; set REDIS_URL or use --api-workers 1"
        )
    given = {"market-data": market_data, "arbitrage": arbitrage}
    if market_data is not None and not settings.redis_url:
        raise ConfigError("--market-data: the market-data service publishes on the bus and needs REDIS_URL; set it "
                          "(redis://...) or leave --market-data out")  # fmt: skip
    offered = [*SERVICES, *(name for name in VENUE_SERVICES if given[name] is not None)]
    chosen = list(only or offered)
    unknown = sorted(set(chosen) - set(offered))
    if unknown:
        hint = "; market-data and arbitrage need their options (--market-data, --arbitrage)"
        raise ConfigError(f"--only {unknown} is not a service; choose from {', '.join(offered)}{hint}")
    if "worker" in chosen and not settings.redis_url:  # no Redis: the API runs its jobs in its own process
        chosen.remove("worker")
    if "live" in chosen and (why := _no_candles()):
        chosen.remove("live")
        console.print(f"[yellow]live: not started[/]: {why}", highlight=False)
    commands = service_commands(
        lab=lab_port,
        dagster=dagster_port,
        dashboard=dashboard_port,
        speed=speed,
        lab_token=secrets.token_hex(16),
        strategy=latest_champion() or "sma_cross",
        api_host=settings.api_host,
        api=api_port,
        api_workers=api_workers,
        log_level=settings.log_level,
        market_data=market_data,
        arbitrage=arbitrage,
    )
    console.print(f"starting {', '.join(chosen)}; their addresses follow once they answer. Ctrl-C stops them all.")
    own_env = process_env(settings, metrics_port=metrics_port, api_workers=api_workers)
    probes: dict[str, Probe] = {
        "lab": f"http://127.0.0.1:{lab_port}/api",
        "dagster": f"http://127.0.0.1:{dagster_port}/server_info",
        "dashboard": f"http://127.0.0.1:{dashboard_port}/_stcore/health",
        "api": f"http://{_loopback(settings.api_host)}:{api_port}/ready",
        "live": lambda: engine_health(LIVE_SESSION)[0],
    }
    if metrics_port:
        for name in ("worker", *VENUE_SERVICES):
            probes[name] = f"http://{_loopback(settings.metrics_host)}:{metrics_port + METRICS_OFFSET[name]}/metrics"
    threading.Thread(
        target=announce,
        name="up-announce",
        daemon=True,
        kwargs={
            "where": {n: commands[n][1] for n in chosen},
            "probes": {n: u for n, u in probes.items() if n in chosen},
        },
    ).start()
    env = lab_environment(
        {**os.environ, "PYTHONUNBUFFERED": "1", "DAGSTER_HOME": str(dagster_home())}
    )  # the one pipelines.run uses
    manager = Manager(Printer(sys.stdout))
    for name in chosen:
        manager.add_process(name, commands[name][0], env={**env, **own_env.get(name, {})}, cwd=str(REPO))
    try:
        manager.loop()
    finally:
        if multiproc := own_env.get("api", {}).get("PROMETHEUS_MULTIPROC_DIR"):
            shutil.rmtree(multiproc, ignore_errors=True)
    raise typer.Exit(code=manager.returncode or 0)


def process_env(settings: Settings, *, metrics_port: int, api_workers: int) -> dict[str, dict[str, str]]:
    """What each service's environment adds to the shared one (module rules): name -> variables."""
    own: dict[str, dict[str, str]] = {name: {} for name in (*SERVICES, *VENUE_SERVICES)}
    for name, offset in METRICS_OFFSET.items():
        # "": one set for the whole shell would be taken twice
        own[name]["TRADELOOP_METRICS_PORT"] = str(metrics_port + offset) if metrics_port else ""
    if api_workers > 1:
        own["api"]["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="tradeloop-api-metrics-")
    if settings.log_file is not None:
        log_file = Path(settings.log_file)
        for name in own:
            own[name]["TRADELOOP_LOG_FILE"] = str(log_file.with_name(f"{log_file.stem}-{name}{log_file.suffix}"))
        if api_workers > 1:
            own["api"]["TRADELOOP_LOG_MAX_MB"] = "0"
    return own


def _loopback(host: str) -> str:
    """Where this machine reaches a server bound to ``host`` (all interfaces: loopback)."""
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host


def _no_candles() -> str | None:
    """Why the paper session cannot start (None: it can): the lake lacks its candles."""
    from tradeloop.cli.live_cmds import DEFAULT_EXCHANGE, DEFAULT_SYMBOLS, DEFAULT_TIMEFRAME
    from tradeloop.data import CandleLake, SeriesKey

    lake = CandleLake(get_settings().lake_dir)
    if any(lake.last_ts(SeriesKey(DEFAULT_EXCHANGE, s, DEFAULT_TIMEFRAME)) is None for s in DEFAULT_SYMBOLS):
        return (
            f"the lake under {lake.root} has no {DEFAULT_EXCHANGE} {DEFAULT_TIMEFRAME} candles of "
            f"{' and '.join(DEFAULT_SYMBOLS)}; run `make demo` (or `tradeloop data import`) first"
        )
    return None


def latest_champion() -> str | None:
    """The strategy whose champion was promoted last (None: no champion yet)."""
    from tradeloop.errors import TradeloopError
    from tradeloop.registry import ModelRegistry

    registry = ModelRegistry(get_settings().registry_dir)
    promoted = []
    for name in registry.strategies():
        try:
            entry = registry.champion(name)
        except TradeloopError:  # a broken manifest: the live engine reports it if chosen
            continue
        if entry is not None:
            promoted.append((entry.promoted_at, name))
    return max(promoted)[1] if promoted else None


def announce(*, where: dict[str, str], probes: dict[str, Probe], timeout_s: float = 180.0, out=None) -> dict[str, bool]:
    """Wait until every service in ``probes`` is ready (or ``timeout_s``), then print the table
    of addresses in one write, after the services' start-up output. Returns who was ready.
    A probe is a URL that must answer 200, or a function that must return True."""
    deadline = time.monotonic() + timeout_s
    pending = dict(probes)
    while pending and time.monotonic() < deadline:
        pending = {name: probe for name, probe in pending.items() if not _ready(probe)}
        if pending:
            time.sleep(0.5)
    tbl = table("tradeloop up: ready", ["service", "where", "state"], left=("service", "where", "state"))
    for name, place in where.items():
        state = "not answering" if name in pending else ("up" if name in probes else "started")
        tbl.add_row(name, place, state)
    buffer = io.StringIO()
    Console(file=buffer, width=console.width, force_terminal=console.is_terminal).print(tbl)
    buffer.write("Ctrl-C stops every service.\n")
    stream = out or sys.stdout
    stream.write(buffer.getvalue())
    stream.flush()
    return {name: name not in pending for name in probes}


def _ready(probe: Probe) -> bool:
    if callable(probe):
        return probe()
    try:
        with urllib.request.urlopen(probe, timeout=2) as reply:
            return reply.status == 200
    except OSError:
        return False
