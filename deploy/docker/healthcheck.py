"""A container's health check: asks a tradeloop process its own health endpoint; exit 0
healthy, 1 not (with the reason on stderr). Standard library only, so it runs in any image
with a Python, and under a supervisor on a bare machine too.

    healthcheck.py URL                    any HTTP endpoint that answers 200 when healthy:
                                          the API's /ready (database and Redis answer),
                                          Dagster's /server_info, Streamlit's /_stcore/health,
                                          JupyterLab's /api
    healthcheck.py engine [--max-age S]   the live engine: its /metrics (TRADELOOP_METRICS_HOST
                                          and _PORT, as the engine reads them) answers, and the
                                          heartbeat of every session it runs is younger than S
                                          seconds (default 180: tradeloop.ops.status counts a
                                          session stale after six missed 30 s beats)
    healthcheck.py metrics                a job worker: its /metrics answers

A process bound to all interfaces (0.0.0.0, ::) is asked on loopback.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
import urllib.error
import urllib.request

TIMEOUT_S = 5.0
STALE_AFTER_S = 180.0  # tradeloop.ops.status.STALE_AFTER_S
HEARTBEAT = re.compile(r'^tradeloop_engine_heartbeat_timestamp_seconds\{session="([^"]*)"\} (\S+)$', re.M)


def fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=TIMEOUT_S) as reply:
        if reply.status != 200:
            raise OSError(f"{url} answered {reply.status}")
        return reply.read().decode("utf-8", "replace")


def metrics_url() -> str:
    port = os.environ.get("TRADELOOP_METRICS_PORT", "").strip()
    if not port:
        raise OSError("TRADELOOP_METRICS_PORT is not set: the process serves no /metrics to ask")
    host = os.environ.get("TRADELOOP_METRICS_HOST", "127.0.0.1").strip() or "127.0.0.1"
    host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    return f"http://{host}:{port}/metrics"


def engine(max_age_s: float) -> str:
    beats = HEARTBEAT.findall(fetch(metrics_url()))
    if not beats:
        raise OSError("the engine's /metrics has no heartbeat: no session is running")
    now = time.time()
    stale = {session: now - float(ts) for session, ts in beats if now - float(ts) > max_age_s}
    if stale:
        ages = ", ".join(f"{name} {age:.0f} s ago" for name, age in sorted(stale.items()))
        raise OSError(f"heartbeat older than {max_age_s:g} s: {ages}")
    return f"{len(beats)} session(s) beating"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", help="a URL, 'engine' or 'metrics'")
    parser.add_argument("--max-age", type=float, default=STALE_AFTER_S, help="engine: seconds without a heartbeat")
    args = parser.parse_args(argv)
    try:
        if args.what == "engine":
            said = engine(args.max_age)
        elif args.what == "metrics":
            fetch(metrics_url())
            said = "metrics answer"
        elif args.what.startswith(("http://", "https://")):
            fetch(args.what)
            said = f"{args.what} answers"
        else:
            parser.error(f"{args.what!r} is neither a URL nor 'engine' nor 'metrics'")
    except (OSError, urllib.error.URLError, ValueError) as exc:
        print(f"unhealthy: {exc}", file=sys.stderr)
        return 1
    print(f"healthy: {said}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
