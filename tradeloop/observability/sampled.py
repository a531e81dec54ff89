"""Gauges read when Prometheus scrapes, not when something happens: a queue's depth, the free
space of a disk, the orders of a session still ``unknown`` in the database.

Each :class:`Sampled` family is registered once (at import, in the default registry) and
holds any number of *sources*, each a function returning ``(label values, value)`` rows,
added and dropped by key (:meth:`Sampled.track`, :meth:`Sampled.forget`). A source that
raises is skipped for that scrape (logged at most once a minute): its series vanish until it
answers again, which the alert rules treat like a process that stopped reporting.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator

from prometheus_client.core import REGISTRY, GaugeMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

log = logging.getLogger(__name__)
Rows = Iterable[tuple[tuple[str, ...], float]]
Source = Callable[[], Rows]
WARN_EVERY_S = 60.0


class Sampled(Collector):
    """One gauge family whose samples come from its sources at each scrape (module rules)."""

    def __init__(
        self, name: str, documentation: str, labelnames: tuple[str, ...], *, registry: CollectorRegistry = REGISTRY
    ):
        self.name, self.documentation, self.labelnames = name, documentation, labelnames
        self._sources: dict[str, tuple[object, Source]] = {}
        self._lock = threading.Lock()
        self._warned_at = -WARN_EVERY_S
        registry.register(self)

    def track(self, key: str, source: Source, *, owner: object = None) -> None:
        """Read ``source`` at every scrape (replacing the one under ``key``: one series per labels)."""
        with self._lock:
            self._sources[key] = (owner, source)

    def forget(self, key: str, *, owner: object = None) -> None:
        """Stop reading ``key``'s source (only ``owner``'s, when given: a newer one stays)."""
        with self._lock:
            if owner is None or (key in self._sources and self._sources[key][0] is owner):
                self._sources.pop(key, None)

    def describe(self) -> Iterator[GaugeMetricFamily]:  # registering never calls a source
        yield GaugeMetricFamily(self.name, self.documentation, labels=list(self.labelnames))

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(self.name, self.documentation, labels=list(self.labelnames))
        with self._lock:
            sources = list(self._sources.items())
        for key, (_, source) in sources:
            try:
                rows = list(source())
            except Exception as exc:  # noqa: BLE001 - a scrape never fails on one source
                self._warn(key, exc)
                continue
            for labels, value in rows:
                family.add_metric(list(labels), float(value))
        yield family

    def _warn(self, key: str, exc: Exception) -> None:
        if time.monotonic() - self._warned_at >= WARN_EVERY_S:
            self._warned_at = time.monotonic()
            log.warning("metric %s: source %s not read (%s: %s); its series are left out", self.name, key,
                        type(exc).__name__, exc)  # fmt: skip
