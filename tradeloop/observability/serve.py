"""Where Prometheus reads a process's metrics.

* A process without a web server of its own (the live engine, a job worker) serves
  ``/metrics`` with prometheus-client's own HTTP server, on ``TRADELOOP_METRICS_HOST``
  (127.0.0.1 by default) and ``TRADELOOP_METRICS_PORT``; unset (the default), nothing is
  served. Each process needs its own port.
* The API answers ``GET /metrics`` itself (``api.metrics``) with :func:`exposition`. When
  ``PROMETHEUS_MULTIPROC_DIR`` is set (several uvicorn workers), the answer merges every
  worker's counters and histograms from that folder (prometheus-client's multiprocess mode),
  plus the gauges read at the scrape.
* Every process also exports prometheus-client's process metrics (``process_resident_memory_bytes``,
  CPU, open files), the free space of the data folder's volume and its database pool
  (``tradeloop.observability.pool``).
"""

from __future__ import annotations

import logging
import os
import threading
from wsgiref.simple_server import WSGIServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, start_http_server
from prometheus_client.core import REGISTRY

from tradeloop.errors import ConfigError
from tradeloop.observability.pool import POOL_FAMILIES
from tradeloop.observability.service import DISK_FREE, DISK_SIZE, QUEUE_DEPTH, watch_disk
from tradeloop.settings import Settings

log = logging.getLogger(__name__)
_served: dict[tuple[str, int], WSGIServer] = {}
_lock = threading.Lock()


def serve_metrics(settings: Settings) -> WSGIServer | None:
    """``/metrics`` of this process on ``TRADELOOP_METRICS_HOST``:``TRADELOOP_METRICS_PORT``
    (once per process); None when no port is set. A taken port is a ConfigError naming it."""
    if settings.metrics_port is None:
        return None
    watch_disk(settings.data_dir)
    where = (settings.metrics_host, settings.metrics_port)
    with _lock:
        if where not in _served:
            try:
                _served[where], _ = start_http_server(settings.metrics_port, addr=settings.metrics_host)
            except OSError as exc:
                raise ConfigError(
                    f"TRADELOOP_METRICS_PORT={settings.metrics_port} on TRADELOOP_METRICS_HOST={settings.metrics_host} "
                    f"cannot be served ({exc.strerror or exc}); give each process a free port of its own, or unset it"
                ) from None
            log.info("metrics on http://%s:%d/metrics", *where)
    return _served[where]


def exposition() -> tuple[bytes, str]:
    """This process's metrics in Prometheus' text format, and its content type (module rules)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        from tradeloop.observability.drift import DRIFT_FAMILIES  # the API's (watch_drift); heavy for others

        for sampled in (QUEUE_DEPTH, DISK_FREE, DISK_SIZE, *POOL_FAMILIES, *DRIFT_FAMILIES):
            registry.register(sampled)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
