"""``tradeloop worker``: run the jobs the API queues in Redis (backtests, research runs).

dramatiq's ``Worker`` in this process, ``--threads`` jobs at a time; start as many worker
processes as the machine takes, on this host or others sharing ``REDIS_URL`` and
``DATABASE_URL``. SIGTERM or Ctrl-C stops it gracefully: it takes no new job, stops its
running research runs (queued again, they run later on a worker) and waits up to ``--grace``
seconds for its running backtests; a backtest still running then goes back to the queue for
another worker once this one's heartbeat lapses (a minute). ``tradeloop.jobs.queue`` states
the queue's rules.
"""

from __future__ import annotations

import signal
import threading
from typing import Annotated

import typer

from tradeloop.cli.common import console, handle_errors
from tradeloop.errors import ConfigError
from tradeloop.jobs import QUEUES, JobQueue
from tradeloop.logs import configure_logging
from tradeloop.observability import serve_metrics
from tradeloop.ops import OpsStore
from tradeloop.redaction import mask_url
from tradeloop.settings import get_settings


@handle_errors
def worker(
    threads: Annotated[int, typer.Option(min=1, max=64, help="Jobs run at a time")] = 2,
    queue: Annotated[
        list[str] | None, typer.Option(help=f"Take jobs only from these queues ({', '.join(QUEUES.values())})")
    ] = None,
    grace: Annotated[float, typer.Option(min=0, help="Seconds a stop waits for running backtests")] = 30.0,
) -> None:
    """Run queued backtests and research runs (needs REDIS_URL); SIGTERM or Ctrl-C stops it."""
    settings = get_settings()
    configure_logging(settings, service="worker")
    if not settings.redis_url:
        raise ConfigError(
            "tradeloop worker takes jobs from Redis: set REDIS_URL (e.g. redis://127.0.0.1:6379/0). "
            "Without it the API runs the jobs in its own process and needs no worker"
        )
    unknown = sorted(set(queue or ()) - set(QUEUES.values()))
    if unknown:
        raise ConfigError(f"--queue {', '.join(unknown)} is not a queue; choose from {', '.join(QUEUES.values())}")
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    store = OpsStore.open(settings.effective_database_url)
    jobs = JobQueue.from_settings(settings, store=store)
    serve_metrics(settings)  # TRADELOOP_METRICS_PORT: /metrics for Prometheus, with the queue's depth
    try:
        jobs.start_worker(threads=threads, queues=set(queue) if queue else None)
        console.print(
            f"worker: {threads} thread(s) on {', '.join(queue or QUEUES.values())} from "
            f"{mask_url(settings.redis_url)} (keys {settings.redis_prefix}:jobs:*); SIGTERM or Ctrl-C stops it",
            highlight=False,
        )
        while not stop.wait(1.0):
            pass
        console.print(f"worker: stopping; waiting up to {grace:g} s for running jobs", highlight=False)
        jobs.stop_worker(timeout_s=grace)
    finally:
        jobs.broker.close()
        store.close()
    console.print("worker: stopped", highlight=False)
