"""A research job: ``python -m pipelines.run`` in a child process, with a time limit.

Why a child process: ``tradeloop`` (and ``api/``) never import ``pipelines/`` (the layers in
DESIGN.md); the command line is the pipeline's public face, the one ``make demo`` and a
quant use, so the job runs exactly that. The child gets this worker's settings as its
environment (``TRADELOOP_DATA_DIR``, ``DAGSTER_HOME``, ``DATABASE_URL``): its runs land in
the Dagster instance ``dagster dev`` shows.

Outcome rules:

- exit 0: succeeded; the result holds the Dagster run id and the champion the run reports
  (``research pipeline done ... (run <id>)``, ``champion of <strategy>: <artifact> - ...``).
- exit > 0: the run failed (its log tail is in the error); failed, not retried.
- killed by a signal (exit < 0, e.g. the kernel's out-of-memory killer): a transient
  ``ChildProcessError``, retried.
- past ``timeout_s``: the child's whole process group (its notebook kernels, optuna
  workers) is terminated, then killed; :class:`JobTimeLimitError`, failed.
- the worker stops (dramatiq's shutdown notice, an exception raised in the waiting thread):
  the process group is stopped the same way and the exception goes on (the queue runs the
  job again later). A worker killed outright (SIGKILL) cannot do this: its child runs on.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from typing import Any

from tradeloop.errors import TradeloopError
from tradeloop.jobs.model import JobTimeLimitError, ResearchParams
from tradeloop.settings import Settings

TAIL_LINES = 20
TAIL_CHARS = 2000
DONE = re.compile(r"research pipeline done in [\d.]+s \(run (?P<run>[0-9a-f-]+)\)")
FAILED = re.compile(r"research run (?P<run>[0-9a-f-]+) failed")
CHAMPION = re.compile(r"champion of (?P<strategy>\S+): (?P<artifact>[0-9a-f]+) - (?P<state>promoted now|kept)")


def command(params: ResearchParams) -> list[str]:
    return [sys.executable, "-m", "pipelines.run", *params.argv()]


def environment(settings: Settings) -> dict[str, str]:
    """This process's environment with the settings the child must share, and output that
    parses: no colours, lines long enough not to wrap."""
    env = dict(os.environ)
    env |= {
        "TRADELOOP_DATA_DIR": str(settings.data_dir.resolve()),
        "DAGSTER_HOME": str(settings.dagster_dir),
        "NO_COLOR": "1",
        "COLUMNS": "1000",
        "PYTHONUNBUFFERED": "1",
    }
    if settings.database_url:
        env["DATABASE_URL"] = settings.database_url
    return env


def tail(text: str) -> str:
    lines = text.strip().splitlines()[-TAIL_LINES:]
    return "\n".join(lines)[-TAIL_CHARS:]


def _stop(process: subprocess.Popen[str], *, grace_s: float = 10.0) -> str:
    """Terminate the child's process group, kill it after ``grace_s``; what it printed."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        try:
            out, _ = process.communicate(timeout=grace_s)
            return out or ""
        except subprocess.TimeoutExpired:
            continue
    out, _ = process.communicate()
    return out or ""


def run_research_job(params: ResearchParams, *, settings: Settings, timeout_s: float) -> dict[str, Any]:
    """Run the research pipeline; its exit code, run id, champion, seconds and log tail
    (module rules)."""
    started = time.monotonic()
    process = subprocess.Popen(
        command(params),
        env=environment(settings),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group: a time limit stops its children too
    )
    deadline = started + timeout_s
    try:
        while True:  # a second at a time: the worker's stop notice (an exception raised in this thread) gets in
            try:
                output, _ = process.communicate(timeout=max(0.0, min(1.0, deadline - time.monotonic())))
                break
            except subprocess.TimeoutExpired:
                if time.monotonic() >= deadline:
                    printed = _stop(process)
                    raise JobTimeLimitError(
                        f"the research run passed its time limit of {timeout_s:g} s and was stopped; give it "
                        f"fewer trials or an earlier cut-off. Its last output: {tail(printed)[-300:]}"
                    ) from None
    except BaseException:  # the worker stops (or dramatiq's time limit fires): take the child down with it
        if process.poll() is None:
            _stop(process, grace_s=5.0)
        raise
    seconds = round(time.monotonic() - started, 1)
    code = process.returncode
    if code < 0:
        raise ChildProcessError(
            f"the research run was killed by signal {-code} ({signal.Signals(-code).name}) after {seconds:g} s"
        )
    done, failed = DONE.search(output), FAILED.search(output)
    if code != 0:
        run = f" (Dagster run {failed['run']})" if failed else ""
        raise TradeloopError(f"the research run failed with exit code {code}{run}: {tail(output)[-350:]}")
    champion = CHAMPION.search(output)
    return {
        "exit_code": code,
        "run_id": done["run"] if done else None,
        "champion": (
            {
                "strategy": champion["strategy"],
                "artifact": champion["artifact"],
                "promoted": champion["state"] == "promoted now",
            }
            if champion
            else None
        ),
        "seconds": seconds,
        "output_tail": tail(output),
    }
