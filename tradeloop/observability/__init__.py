"""Prometheus metrics of every tradeloop process (prometheus-client), all named ``tradeloop_*``.

``tradeloop.observability.engine`` (the live engine, per session), ``.service`` (the API, the
job workers, the disk), ``.sampled`` (gauges read at the scrape) and ``.serve`` (where they are
read: ``TRADELOOP_METRICS_PORT``, or the API's ``/metrics``). ``deploy/prometheus`` holds the
scrape configuration and the alert rules over them, ``deploy/grafana`` the dashboards.

Importing it turns off prometheus-client's ``*_created`` series (a timestamp per counter that
no rule or dashboard reads).
"""

from prometheus_client import disable_created_metrics

from tradeloop.observability.engine import BarFigures, SessionMetrics, SessionState
from tradeloop.observability.serve import exposition, serve_metrics
from tradeloop.observability.service import (
    api_buckets,
    api_rate_limited,
    api_request,
    job_attempt,
    unwatch_queue,
    watch_disk,
    watch_queue,
)

disable_created_metrics()

__all__ = [
    "BarFigures",
    "SessionMetrics",
    "SessionState",
    "api_buckets",
    "api_rate_limited",
    "api_request",
    "exposition",
    "job_attempt",
    "serve_metrics",
    "unwatch_queue",
    "watch_disk",
    "watch_queue",
]
