"""The research pipeline's Prometheus metrics, read from the Dagster instance and the model
registry at each scrape: ``python -m pipelines.metrics`` serves them on
``TRADELOOP_METRICS_HOST``:``TRADELOOP_METRICS_PORT`` (job ``tradeloop-research`` in
deploy/prometheus/prometheus.yml).

Why pull and not push: Dagster's documented Prometheus integration (``dagster-prometheus``)
pushes to a Pushgateway from inside a run, so a run killed before its last step (out of
memory, the daemon restarted) never reports, and a queued run cannot. The instance's run
records know every run however it ended; this exporter reads them.

Series (``pipeline`` is the Dagster job's name: ``retrain``, ``refresh_candles``,
``nightly_backup``; never ``job``, which Prometheus reserves for the scrape job):

* ``tradeloop_dagster_runs{pipeline,status}``: runs created in the last 24 hours by status
  (``success``, ``failure``, ``canceled``, ``started``, ``queued``...), at most
  :data:`MAX_RUNS` of them.
* ``tradeloop_dagster_run_duration_seconds{pipeline,status}``: start to end of the latest
  finished run of each pipeline (``status``: how it ended).
* ``tradeloop_dagster_last_success_timestamp_seconds{pipeline}`` and
  ``tradeloop_dagster_last_failure_timestamp_seconds{pipeline}``: end time of the latest run
  that succeeded, or failed, among the last :data:`MAX_RUNS` of each.
* ``tradeloop_champion_promoted_timestamp_seconds{strategy}``: when the registry's champion
  in force was promoted (or rolled back to); its age is ``time() - it`` in PromQL.

The instance is read at most once every :data:`CACHE_S` seconds however many families ask;
an instance that cannot be read leaves these series out of the scrape (``tradeloop.observability.sampled``).
"""

import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import dagster as dg

from tradeloop.errors import ConfigError
from tradeloop.observability import serve_metrics
from tradeloop.observability.sampled import Rows, Sampled
from tradeloop.registry import ModelRegistry
from tradeloop.settings import get_settings

WINDOW_S = 24 * 3600
MAX_RUNS = 500
CACHE_S = 5.0
FINISHED = (dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED)

RUNS = Sampled("tradeloop_dagster_runs", "Dagster runs created in the last 24 h by status", ("pipeline", "status"))
DURATION = Sampled("tradeloop_dagster_run_duration_seconds", "Start to end of the latest finished run",
                   ("pipeline", "status"))  # fmt: skip
LAST_SUCCESS = Sampled("tradeloop_dagster_last_success_timestamp_seconds", "End of the latest successful run",
                       ("pipeline",))  # fmt: skip
LAST_FAILURE = Sampled("tradeloop_dagster_last_failure_timestamp_seconds", "End of the latest failed run",
                       ("pipeline",))  # fmt: skip
PROMOTED = Sampled("tradeloop_champion_promoted_timestamp_seconds", "When the champion in force was promoted",
                   ("strategy",))  # fmt: skip


@dataclass(frozen=True, kw_only=True, slots=True)
class ResearchFigures:
    """One reading of the instance and the registry (series as ``(labels, value)`` rows)."""

    runs: list[tuple[tuple[str, ...], float]] = field(default_factory=list)
    duration: list[tuple[tuple[str, ...], float]] = field(default_factory=list)
    last_success: list[tuple[tuple[str, ...], float]] = field(default_factory=list)
    last_failure: list[tuple[tuple[str, ...], float]] = field(default_factory=list)
    promoted: list[tuple[tuple[str, ...], float]] = field(default_factory=list)


def read_figures(instance: dg.DagsterInstance, registry: ModelRegistry, *, now_s: float) -> ResearchFigures:
    """The module's series from ``instance``'s run records and ``registry``'s champions."""
    recent = instance.get_run_records(
        filters=dg.RunsFilter(created_after=datetime.fromtimestamp(now_s - WINDOW_S).astimezone()), limit=MAX_RUNS
    )
    counts: dict[tuple[str, str], int] = {}
    for record in recent:
        key = (record.dagster_run.job_name, record.dagster_run.status.value.lower())
        counts[key] = counts.get(key, 0) + 1
    finished = instance.get_run_records(filters=dg.RunsFilter(statuses=list(FINISHED)), limit=MAX_RUNS)
    duration: dict[str, tuple[tuple[str, ...], float]] = {}
    ended: dict[tuple[str, dg.DagsterRunStatus], float] = {}
    for record in finished:  # newest first
        run, start, end = record.dagster_run, record.start_time, record.end_time
        if end is None:
            continue
        if run.job_name not in duration and start is not None:
            duration[run.job_name] = ((run.job_name, run.status.value.lower()), end - start)
        ended.setdefault((run.job_name, run.status), end)
    promoted: list[tuple[tuple[str, ...], float]] = []
    for strategy in registry.strategies():
        champion = registry.champion(strategy)
        if champion is not None:
            promoted.append(((strategy,), datetime.fromisoformat(champion.promoted_at).timestamp()))
    return ResearchFigures(
        runs=[(key, float(n)) for key, n in sorted(counts.items())],
        duration=sorted(duration.values()),
        last_success=[((job,), t) for (job, s), t in sorted(ended.items()) if s == dg.DagsterRunStatus.SUCCESS],
        last_failure=[((job,), t) for (job, s), t in sorted(ended.items()) if s == dg.DagsterRunStatus.FAILURE],
        promoted=promoted,
    )


def watch_research(instance: dg.DagsterInstance, registry: ModelRegistry) -> None:
    """Report :func:`read_figures` at each scrape (read at most once every :data:`CACHE_S`)."""
    lock = threading.Lock()
    cached: list[tuple[float, ResearchFigures]] = []

    def figures() -> ResearchFigures:
        with lock:
            if not cached or time.monotonic() - cached[0][0] >= CACHE_S:
                cached[:] = [(time.monotonic(), read_figures(instance, registry, now_s=time.time()))]
            return cached[0][1]

    def source(pick: Callable[[ResearchFigures], Rows]) -> Callable[[], Rows]:
        return lambda: pick(figures())

    RUNS.track("research", source(lambda f: f.runs))
    DURATION.track("research", source(lambda f: f.duration))
    LAST_SUCCESS.track("research", source(lambda f: f.last_success))
    LAST_FAILURE.track("research", source(lambda f: f.last_failure))
    PROMOTED.track("research", source(lambda f: f.promoted))


def main() -> int:
    """Serve the research metrics until SIGTERM or SIGINT."""
    settings = get_settings()
    if settings.metrics_port is None:
        raise ConfigError("python -m pipelines.metrics serves on TRADELOOP_METRICS_PORT; set it (e.g. 9103)")
    home = Path(settings.dagster_dir)
    home.mkdir(parents=True, exist_ok=True)
    watch_research(dg.DagsterInstance.from_config(str(home)), ModelRegistry(settings.registry_dir))
    serve_metrics(settings)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
