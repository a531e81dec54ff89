"""The API's and the job workers' metrics, and the data folder's disk space.

* API: ``tradeloop_api_requests_total{method,route,status}`` and
  ``tradeloop_api_request_duration_seconds{method,route}``, where ``route`` is the matched
  route's template (``/sessions/{session_id}``; ``unmatched`` for a path no route serves), so a
  scanner cannot make a series per URL; ``tradeloop_api_rate_limited_total{bucket}`` counts
  refusals (429) per bucket (``api.ratelimit`` rule 1). A failed call is a 5xx ``status``.
* Jobs: ``tradeloop_job_duration_seconds{kind,outcome}`` for every attempt (``succeeded``,
  ``failed``, ``timeout``, ``retried`` after a transient error); its ``_count`` is the attempts.
  ``tradeloop_jobs_queue_depth{queue,state}`` (``ready``, ``delayed``, ``dead_letters``) is read
  from the queue at each scrape, by every process that watches it (the API and each worker).
* Disk: ``tradeloop_disk_free_bytes`` and ``tradeloop_disk_size_bytes`` of the volume holding
  ``TRADELOOP_DATA_DIR`` (the lake, the SQLite database, the registry), read at each scrape.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Protocol

from prometheus_client import Counter, Histogram

from tradeloop.observability.sampled import Sampled

API_REQUESTS = Counter("tradeloop_api_requests", "API requests answered", ["method", "route", "status"])
API_LATENCY = Histogram(
    "tradeloop_api_request_duration_seconds", "Time to answer an API request", ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)  # fmt: skip
API_RATE_LIMITED = Counter("tradeloop_api_rate_limited", "API requests refused by a rate limit (429)", ["bucket"])
JOB_DURATION = Histogram(
    "tradeloop_job_duration_seconds", "One attempt at a queued job, by how it ended", ["kind", "outcome"],
    buckets=(0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 4 * 3600.0),
)  # fmt: skip
JOB_OUTCOMES = ("succeeded", "failed", "timeout", "retried")
QUEUE_DEPTH = Sampled("tradeloop_jobs_queue_depth", "Messages on a job queue", ("queue", "state"))
DISK_FREE = Sampled("tradeloop_disk_free_bytes", "Free bytes on the volume of a data folder", ("path",))
DISK_SIZE = Sampled("tradeloop_disk_size_bytes", "Size of the volume of a data folder", ("path",))


def api_request(*, method: str, route: str, status: int, seconds: float) -> None:
    API_REQUESTS.labels(method, route, str(status)).inc()
    API_LATENCY.labels(method, route).observe(seconds)


def api_rate_limited(bucket: str) -> None:
    API_RATE_LIMITED.labels(bucket).inc()


def api_buckets(buckets: Iterable[str]) -> None:
    """Every bucket's refusals at zero (a dashboard shows 0 before the first)."""
    for bucket in buckets:
        API_RATE_LIMITED.labels(bucket)


def job_attempt(*, kind: str, outcome: str, seconds: float) -> None:
    JOB_DURATION.labels(kind, outcome).observe(seconds)


class QueueDepthRow(Protocol):
    """One queue's depth (``tradeloop.jobs.QueueDepth``)."""

    @property
    def queue(self) -> str: ...
    @property
    def ready(self) -> int: ...
    @property
    def delayed(self) -> int: ...
    @property
    def dead_letters(self) -> int: ...


def watch_queue(
    key: str, depth: Callable[[], Iterable[QueueDepthRow]], *, kinds: Iterable[str], owner: object = None
) -> None:
    """Report ``depth()`` at each scrape (under ``key``, for ``owner``: :func:`unwatch_queue`
    stops it) and every kind's attempts at zero."""
    for kind in kinds:
        for outcome in JOB_OUTCOMES:
            JOB_DURATION.labels(kind, outcome)

    def rows() -> list[tuple[tuple[str, ...], float]]:
        out: list[tuple[tuple[str, ...], float]] = []
        for d in depth():
            out += [((d.queue, "ready"), d.ready), ((d.queue, "delayed"), d.delayed)]
            out.append(((d.queue, "dead_letters"), d.dead_letters))
        return out

    QUEUE_DEPTH.track(key, rows, owner=owner)


def unwatch_queue(key: str, *, owner: object = None) -> None:
    QUEUE_DEPTH.forget(key, owner=owner)


def watch_disk(path: Path) -> None:
    """Report the free and total bytes of the volume holding ``path`` at each scrape."""
    where = str(path.resolve())
    DISK_FREE.track(where, lambda: [((where,), shutil.disk_usage(where).free)])
    DISK_SIZE.track(where, lambda: [((where,), shutil.disk_usage(where).total)])
