"""``tradeloop up``: every local service under one process manager (honcho).

JupyterLab, the Dagster UI, the live engine (paper, replaying the lake) and the dashboard,
each on 127.0.0.1 with its port printed first. Ctrl-C (or SIGTERM) stops them all.
"""

from __future__ import annotations

import os
import secrets
import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer

from tradeloop.cli.common import REPO, console, handle_errors, table
from tradeloop.errors import ConfigError
from tradeloop.research.notebooks import lab_environment
from tradeloop.settings import get_settings

SERVICES = ("lab", "dagster", "live", "dashboard")


def service_commands(*, lab: int, dagster: int, dashboard: int, speed: float,
                     lab_token: str) -> dict[str, tuple[str, str]]:
    """name -> (command line, URL or note). Every command runs from the repository root."""
    py = shlex.quote(sys.executable)
    return {  # Lab's root, settings and allow_root come from jupyter/ (lab_environment)
        "lab": (f"{py} -m jupyterlab --ip 127.0.0.1 --port {lab} --no-browser "
                f"--IdentityProvider.token={lab_token}", f"http://127.0.0.1:{lab}/lab?token={lab_token}"),
        "dagster": (f"{py} -m dagster dev -w workspace.yaml -h 127.0.0.1 -p {dagster}", f"http://127.0.0.1:{dagster}"),
        "live": (f"{py} -m tradeloop live run --name paper --follow --speed {speed:g}", "paper session 'paper' (replay)"),
        "dashboard": (f"{py} -m tradeloop dashboard --port {dashboard}", f"http://127.0.0.1:{dashboard}"),
    }


@handle_errors
def up(
    lab_port: Annotated[int, typer.Option(help="JupyterLab port")] = 8888,
    dagster_port: Annotated[int, typer.Option(help="Dagster UI port")] = 3000,
    dashboard_port: Annotated[int, typer.Option(help="Dashboard port")] = 8501,
    speed: Annotated[float, typer.Option(help="Replay speed of the paper session (14400: a 4h bar per second)")]
    = 14400.0,
    only: Annotated[list[str] | None, typer.Option(help=f"Start only these ({', '.join(SERVICES)}); repeat")] = None,
) -> None:
    """Start JupyterLab, the Dagster UI, the live engine (paper) and the dashboard; Ctrl-C stops all."""
    from honcho.manager import Manager
    from honcho.printer import Printer

    chosen = list(only or SERVICES)
    unknown = sorted(set(chosen) - set(SERVICES))
    if unknown:
        raise ConfigError(f"--only {unknown} is not a service; choose from {', '.join(SERVICES)}")
    commands = service_commands(lab=lab_port, dagster=dagster_port, dashboard=dashboard_port, speed=speed,
                                lab_token=secrets.token_hex(16))
    tbl = table("tradeloop up", ["service", "where"])
    for name in chosen:
        tbl.add_row(name, commands[name][1])
    console.print(tbl)
    console.print("Ctrl-C stops every service.")
    env = lab_environment({**os.environ, "PYTHONUNBUFFERED": "1",
                           "DAGSTER_HOME": str(get_settings().dagster_dir)})  # the one pipelines.run uses
    Path(env["DAGSTER_HOME"]).mkdir(parents=True, exist_ok=True)
    manager = Manager(Printer(sys.stdout))
    for name in chosen:
        manager.add_process(name, commands[name][0], env=env, cwd=str(REPO))
    manager.loop()
    raise typer.Exit(code=manager.returncode or 0)
