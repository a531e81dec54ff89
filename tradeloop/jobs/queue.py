"""The job queue: dramatiq over Redis (``REDIS_URL``), or in-process without it.

Why dramatiq: it has retries with exponential backoff (the ``Retries`` middleware) and a
dead-letter queue built in, a per-actor time limit (``TimeLimit``), a ``StubBroker`` that
runs the same actors in-process (the embedded default: a newcomer submits a backtest with
nothing configured), and its Redis broker works with redis-py 8, which the event streams
use; arq pins redis<6, and RQ needs a Redis server even for the embedded default.

Rules:

1. A message carries only the job's id; the ``jobs`` row (``tradeloop.jobs.store``) holds its
   parameters, status, attempts, result or error. The row is written before the message is
   sent; a message whose job is final does nothing (a redelivery).
2. Queues: ``backtests`` and ``research``, one actor each. With Redis every key is under
   ``<TRADELOOP_REDIS_PREFIX>:jobs:`` (``...:backtests`` the waiting ids, ``...:backtests.DQ``
   the retries waiting out a backoff, ``...:backtests.XQ`` the dead letters).
3. Transient errors (:func:`transient`: the network, a lost database or Redis connection, a
   file that went away, a killed child process) are retried ``max_retries`` times with an
   exponential backoff (``min_backoff_ms`` doubled each retry, with jitter, capped at
   ``max_backoff_ms``); meanwhile the row is ``queued`` with the error. After the last retry the
   message goes to the dead-letter queue and the row is ``dead``.
4. Anything else (bad parameters, missing data, a failed research run, a bug) fails the job at
   once: ``failed``, never retried, not dead-lettered. So is a job past its kind's time limit.
   A research run whose worker stops is stopped too and queued again.
5. Without Redis the queue lives in the process that submits (the API) and its worker
   threads run there (:meth:`JobQueue.start_worker`); jobs left ``queued`` or ``running`` by a
   previous process are sent again at start-up (:meth:`JobQueue.resend_unfinished`). Run one such process per database.
6. A user has at most ``max_unfinished_per_owner`` jobs ``queued`` or ``running`` at once;
   one more is refused (``LimitReachedError``) before any row is written. Jobs of no owner
   (the host's own) are not counted.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker
from dramatiq.common import dq_name
from dramatiq.middleware import Middleware, Retries, Shutdown, ShutdownNotifications, TimeLimit, TimeLimitExceeded
from pydantic import BaseModel, ValidationError

from tradeloop.data import CandleLake
from tradeloop.errors import ExchangeError, LimitReachedError, TradeloopError, config_error
from tradeloop.jobs.backtest import run_backtest_job
from tradeloop.jobs.model import PARAMS, BacktestParams, JobKind, JobStatus, ResearchParams
from tradeloop.jobs.research import run_research_job
from tradeloop.jobs.store import JobStore
from tradeloop.logs import bound_ids
from tradeloop.observability import job_attempt, unwatch_queue, watch_queue
from tradeloop.ops import Job, OpsStore
from tradeloop.ops.database import is_connection_error
from tradeloop.settings import Settings

log = logging.getLogger(__name__)

QUEUES = {JobKind.BACKTEST: "backtests", JobKind.RESEARCH: "research"}
Runner = Callable[[dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True, kw_only=True, slots=True)
class JobsConfig:
    """Retries and time limits of the job queue (module rules 3 and 4)."""

    max_retries: int = 3
    min_backoff_ms: int = 10_000
    max_backoff_ms: int = 600_000
    backtest_time_limit_s: float = 1800.0
    research_time_limit_s: float = 4 * 3600.0
    max_unfinished_per_owner: int = 20  # rule 6

    def time_limit_s(self, kind: JobKind) -> float:
        return self.backtest_time_limit_s if kind is JobKind.BACKTEST else self.research_time_limit_s


@dataclass(frozen=True, kw_only=True, slots=True)
class QueueDepth:
    """Messages on one queue: ``ready`` wait for a worker, ``delayed`` wait out a retry's
    backoff, ``dead_letters`` outlasted every retry."""

    queue: str
    ready: int
    delayed: int
    dead_letters: int


def transient(exc: BaseException) -> bool:
    """Whether a retry may succeed where this attempt failed (module rule 3)."""
    import redis

    if isinstance(exc, OSError | ExchangeError | redis.ConnectionError | redis.TimeoutError):
        return True
    return is_connection_error(exc)


def describe(exc: BaseException, *, kind: JobKind | None = None) -> str:
    """The sentence a user reads about ``exc``."""
    if isinstance(exc, ValidationError):
        return str(config_error(exc, what=f"{kind or 'job'} parameters"))
    if isinstance(exc, TradeloopError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def parse(model: type[BaseModel], params: dict[str, Any]) -> Any:
    return model.model_validate(params)


def default_runners(settings: Settings, config: JobsConfig) -> dict[JobKind, Runner]:
    """Each kind's work, on the stores ``settings`` names."""
    lake = CandleLake(settings.lake_dir, quarantine_root=settings.quarantine_dir)

    def backtest(params: dict[str, Any]) -> dict[str, Any]:
        return run_backtest_job(parse(BacktestParams, params), lake=lake)

    def research(params: dict[str, Any]) -> dict[str, Any]:
        return run_research_job(
            parse(ResearchParams, params), settings=settings, timeout_s=config.research_time_limit_s
        )

    return {JobKind.BACKTEST: backtest, JobKind.RESEARCH: research}


class _Outcome(Middleware):
    """Records what the ``Retries`` middleware decided about a failed attempt (it runs after
    it: dramatiq calls ``after_*`` hooks in reverse order)."""

    def __init__(self, jobs: JobStore):
        self.jobs = jobs

    def after_process_message(self, broker, message, *, result=None, exception=None) -> None:
        if exception is None:
            return
        job_id = message.args[0]
        attempt = message.options.get("retries", 1)
        kind = next((k for k, q in QUEUES.items() if message.queue_name in (q, dq_name(q))), None)
        text = f"attempt {attempt} hit a transient error: {describe(exception, kind=kind)}"
        if isinstance(exception, Shutdown):
            self.jobs.retrying(job_id, f"attempt {attempt} was stopped with its worker; it runs again on a worker")
        elif message.failed:
            self.jobs.dead(job_id, f"{text}; no retry left: the message is in the dead-letter queue")
        else:
            self.jobs.retrying(job_id, f"{text}; retried after a backoff")


class JobQueue:
    """Submits jobs and runs them (module rules). Cheap to construct: nothing connects
    until a job is sent or a worker starts."""

    def __init__(
        self,
        *,
        jobs: JobStore,
        runners: Mapping[JobKind, Runner],
        config: JobsConfig | None = None,
        redis_url: str | None = None,
        namespace: str = "tradeloop:jobs",
    ):
        self.jobs, self.runners, self.config = jobs, dict(runners), config or JobsConfig()
        middleware = [
            TimeLimit(),
            ShutdownNotifications(),  # interrupts research runs (notify_shutdown) when the worker stops
            _Outcome(jobs),  # before Retries: its after-hook runs after Retries' (rule 3)
            Retries(
                min_backoff=self.config.min_backoff_ms,
                max_backoff=self.config.max_backoff_ms,
                retry_when=self._retry,  # transient errors only, max_retries times
            ),
        ]
        self.broker: dramatiq.Broker = (
            RedisBroker(url=redis_url, namespace=namespace, middleware=middleware)
            if redis_url
            else StubBroker(middleware=middleware)
        )
        self.namespace = namespace
        self.worker: dramatiq.Worker | None = None
        self._booted = False
        self._lock = threading.Lock()
        self.actors = {
            kind: dramatiq.actor(
                broker=self.broker,
                actor_name=f"run_{kind.value}",
                queue_name=queue,
                time_limit=self._limit_ms(kind),
                notify_shutdown=kind is JobKind.RESEARCH,  # hours long: stopped and run again, not waited for
            )(self._actor(kind))
            for kind, queue in QUEUES.items()
        }

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        store: OpsStore,
        config: JobsConfig | None = None,
        runners: Mapping[JobKind, Runner] | None = None,
    ) -> JobQueue:
        """Redis when ``REDIS_URL`` is set (keys under ``TRADELOOP_REDIS_PREFIX``), else in-process."""
        config = config or JobsConfig()
        return cls(
            jobs=JobStore(store),
            runners=runners or default_runners(settings, config),
            config=config,
            redis_url=settings.redis_url,
            namespace=f"{settings.redis_prefix}:jobs",
        )

    @property
    def embedded(self) -> bool:
        """In-process (no Redis): the submitting process runs the jobs."""
        return isinstance(self.broker, StubBroker)

    def _retry(self, retries: int, exc: BaseException) -> bool:
        return isinstance(exc, Shutdown) or (transient(exc) and retries < self.config.max_retries)

    def _limit_ms(self, kind: JobKind) -> int:
        # a research run stops its child at its own limit (tradeloop.jobs.research); dramatiq's is the backstop
        margin = 60.0 if kind is JobKind.RESEARCH else 0.0
        return int((self.config.time_limit_s(kind) + margin) * 1000)

    def _actor(self, kind: JobKind) -> Callable[[int], None]:
        def run(job_id: int) -> None:
            self.run(kind, job_id)

        run.__name__ = f"run_{kind.value}"
        return run

    # ------------------------------------------------------------------ submitting
    def submit(self, kind: JobKind, params: BaseModel, *, owner_id: int | None) -> Job:
        """A ``queued`` row for ``params`` (a validated ``BacktestParams`` or ``ResearchParams``),
        then its id on the kind's queue."""
        if not isinstance(params, PARAMS[kind]):
            raise TypeError(f"a {kind} job takes {PARAMS[kind].__name__}, not {type(params).__name__}")
        if owner_id is not None:  # rule 6
            counts = self.jobs.counts(owner_id=owner_id)
            unfinished = counts[JobStatus.QUEUED] + counts[JobStatus.RUNNING]
            if unfinished >= (most := self.config.max_unfinished_per_owner):
                raise LimitReachedError(
                    f"you have {unfinished} jobs queued or running, the most one user may have ({most}); "
                    "wait for one to finish (GET /jobs?status=queued shows them) and submit again"
                )
        job = self.jobs.create(kind, params.model_dump(mode="json"), owner_id=owner_id)
        try:
            self.actors[kind].send(job.id)
        except Exception as exc:
            self.jobs.fail(job.id, f"the job could not be queued ({describe(exc)}); submit it again")
            raise
        return job

    # ------------------------------------------------------------------ running
    def run(self, kind: JobKind, job_id: int) -> None:
        """One attempt at job ``job_id`` (a worker thread calls it with the message's id); its log
        records carry ``job_id`` and ``job_kind`` (``tradeloop.logs``)."""
        with bound_ids(job_id=job_id, job_kind=kind.value):
            self._run(kind, job_id)

    def _run(self, kind: JobKind, job_id: int) -> None:
        job = self.jobs.start(job_id)
        if job is None:
            log.info("job %s is finished or gone; its message does nothing", job_id)
            return
        started = time.perf_counter()
        try:
            result = self.runners[kind](job.params)
        except TimeLimitExceeded:
            job_attempt(kind=kind.value, outcome="timeout", seconds=time.perf_counter() - started)
            limit = self.config.time_limit_s(kind)
            self.jobs.fail(job_id, f"the {kind} job passed its time limit of {limit:g} s and was stopped")
            return
        except Exception as exc:
            failed = "retried" if transient(exc) else "failed"
            job_attempt(kind=kind.value, outcome=failed, seconds=time.perf_counter() - started)
            if failed == "retried":
                raise  # the Retries middleware retries it; _Outcome records the attempt
            log.info("job %s failed: %s", job_id, describe(exc, kind=kind))
            self.jobs.fail(job_id, describe(exc, kind=kind))
            return
        job_attempt(kind=kind.value, outcome="succeeded", seconds=time.perf_counter() - started)
        self.jobs.succeed(job_id, result)

    def start_worker(self, *, threads: int = 2, queues: set[str] | None = None) -> dramatiq.Worker:
        """dramatiq's worker in this process (started once): ``threads`` jobs at a time from
        ``queues`` (default: all)."""
        with self._lock:
            if self.worker is not None:
                return self.worker
            if not self._booted:  # as dramatiq's own CLI does in each worker process: starts the time limits' watch
                self.broker.emit_after("process_boot")
                self._booted = True
            worker = dramatiq.Worker(self.broker, queues=queues, worker_threads=threads)
            worker.queue_prefetch = threads  # long jobs: take no more messages than threads can start
            worker.start()
            self.worker = worker
            self.watch()
            return worker

    def resend_unfinished(self) -> list[int]:
        """Embedded only (rule 5), before anything is submitted: send again the jobs a previous
        process left ``queued`` or ``running`` (their messages died with it). Their ids."""
        if not self.embedded:
            raise TypeError("with Redis the messages outlive a process: nothing to send again")
        unfinished = self.jobs.unfinished()
        for job in unfinished:
            self.actors[JobKind(job.kind)].send(job.id)
        return [job.id for job in unfinished]

    def stop_worker(self, *, timeout_s: float = 30.0) -> None:
        """Stop taking messages; stop the running research runs (they are queued again) and wait
        up to ``timeout_s`` for the running backtests. With Redis, a backtest still running then
        is handed to another worker once this one's heartbeat lapses; embedded, it is sent again
        when the next process starts (rule 5)."""
        if self.worker is not None:
            self.worker.stop(timeout=int(timeout_s * 1000))
            self.worker = None

    def close(self) -> None:
        self.unwatch()
        self.stop_worker()
        self.broker.close()

    # ------------------------------------------------------------------ depth
    def watch(self) -> None:
        """Report this queue's depth to Prometheus at each scrape (``tradeloop.observability``)
        until :meth:`unwatch` or :meth:`close`; the API and every worker do."""
        watch_queue(self.namespace, self.depth, kinds=[k.value for k in QUEUES], owner=self)

    def unwatch(self) -> None:
        unwatch_queue(self.namespace, owner=self)

    def depth(self) -> list[QueueDepth]:
        """Messages per queue (module rule 2)."""
        if isinstance(self.broker, RedisBroker):
            client, ns = self.broker.client, self.namespace
            with client.pipeline(transaction=False) as pipe:
                for queue in QUEUES.values():
                    pipe.llen(f"{ns}:{queue}")
                    pipe.hlen(f"{ns}:{dq_name(queue)}.msgs")
                    pipe.zcard(f"{ns}:{queue}.XQ")
                counts = pipe.execute()
            return [
                QueueDepth(queue=q, ready=counts[3 * i], delayed=counts[3 * i + 1], dead_letters=counts[3 * i + 2])
                for i, q in enumerate(QUEUES.values())
            ]
        assert isinstance(self.broker, StubBroker)
        held = self.worker.consumers if self.worker is not None else {}
        return [
            QueueDepth(
                queue=q,
                ready=self.broker.queues[q].qsize(),
                delayed=self.broker.queues[dq_name(q)].qsize()
                + (held[dq_name(q)].delay_queue.qsize() if dq_name(q) in held else 0),
                dead_letters=len(self.broker.dead_letters_by_queue[q]),
            )
            for q in QUEUES.values()
        ]
