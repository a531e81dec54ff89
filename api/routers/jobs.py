"""Backtests and research runs as jobs: submitted here, run by workers, read back by id.

A submission answers ``202 Accepted`` at once with the job (``queued``) and its address in
``Location``; ``GET /jobs/{id}`` shows its status, attempts, and then its result or error.
``tradeloop.jobs.queue`` states the queue's rules (retries of transient errors with backoff,
the dead-letter queue, time limits). With Redis (``REDIS_URL``) the jobs wait there for
``tradeloop worker``; without it this process runs them in its own worker threads, started
with the first job (or at start-up when a previous process left jobs unfinished).

A job belongs to its submitter: another user's job is "not found"; an admin sees all.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Query, Request, Response, status
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from api.deps import Trader, Viewer
from api.paging import MAX_ID
from api.timequery import Since, Until, as_datetime, window
from tradeloop.jobs import BacktestParams, JobKind, JobQueue, JobStatus, ResearchParams
from tradeloop.ops import Job

EMBEDDED_THREADS = 2  # jobs at a time in the API's own process (no Redis)
STOP_GRACE_S = 10.0  # how long shutdown waits for running embedded jobs


@asynccontextmanager
async def lifespan(app: FastAPI):
    """The app's job queue (``app.state.jobs``; tests may set their own first)."""
    queue: JobQueue | None = getattr(app.state, "jobs", None)
    owned = queue is None
    if queue is None:
        ctx = app.state.context
        queue = app.state.jobs = JobQueue.from_settings(ctx.settings, store=ctx.store)
    queue.watch()  # its depth in the API's /metrics (api.metrics)
    if queue.embedded and queue.resend_unfinished():  # a previous process's jobs
        queue.start_worker(threads=EMBEDDED_THREADS)
    try:
        yield
    finally:
        queue.unwatch()
        if queue.embedded:
            await run_in_threadpool(lambda: queue.stop_worker(timeout_s=STOP_GRACE_S))
        if owned:
            queue.broker.close()


router = APIRouter(tags=["jobs"], lifespan=lifespan)


def job_queue(request: Request) -> JobQueue:
    return request.app.state.jobs


Queue = Annotated[JobQueue, Depends(job_queue)]


def _aware(moment: datetime | None) -> datetime | None:
    """SQLite gives back naive datetimes (stored UTC): read them as UTC."""
    return moment.replace(tzinfo=UTC) if moment is not None and moment.tzinfo is None else moment


class JobOut(BaseModel):
    """A job: what was asked, where it stands, and its result or error."""

    id: int = Field(examples=[42])
    kind: JobKind
    status: JobStatus = Field(
        description="queued (also between retries), running, succeeded, failed (not retried) or dead "
        "(transient errors outlasted every retry; dead-lettered)"
    )
    owner_id: int | None = None
    params: dict[str, Any] = Field(description="the parameters as validated, defaults filled in")
    attempts: int = Field(description="how many times a worker started it", examples=[1])
    result: dict[str, Any] | None = Field(
        default=None,
        description="succeeded: a backtest's summary metrics and trade count, or a research run's Dagster "
        "run id and champion",
    )
    error: str | None = Field(default=None, description="the last attempt's error")
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None

    @classmethod
    def of(cls, job: Job) -> JobOut:
        return cls(
            id=job.id, kind=JobKind(job.kind), status=JobStatus(job.status), owner_id=job.owner_id,
            params=job.params, attempts=job.attempts, result=job.result, error=job.error,
            created_at=_aware(job.created_at), started_at=_aware(job.started_at),
            finished_at=_aware(job.finished_at),
        )  # fmt: skip


class QueueDepthOut(BaseModel):
    queue: str = Field(examples=["backtests"])
    ready: int = Field(description="messages waiting for a worker")
    delayed: int = Field(description="retries waiting out their backoff")
    dead_letters: int = Field(description="messages that outlasted every retry (their jobs are dead)")


class QueueOut(BaseModel):
    broker: str = Field(description="redis, or in-process (no REDIS_URL: the API runs the jobs)")
    queues: list[QueueDepthOut]
    jobs_by_status: dict[str, int] = Field(description="the caller's jobs per status (an admin's: everyone's)")


def _submitted(queue: JobQueue, kind: JobKind, params: BacktestParams | ResearchParams, owner_id: int, response):
    job = queue.submit(kind, params, owner_id=owner_id)
    if queue.embedded:
        queue.start_worker(threads=EMBEDDED_THREADS)
    response.headers["Location"] = f"/jobs/{job.id}"
    return JobOut.of(job)


@router.post("/backtests", status_code=status.HTTP_202_ACCEPTED, response_model=JobOut, summary="Queue a backtest")
def submit_backtest(body: BacktestParams, principal: Trader, queue: Queue, response: Response) -> JobOut:
    """Backtest a strategy on stored candles; the job's result holds the summary metrics."""
    return _submitted(queue, JobKind.BACKTEST, body, principal.user_id, response)


@router.post(
    "/research-runs", status_code=status.HTTP_202_ACCEPTED, response_model=JobOut, summary="Queue a research run"
)
def submit_research(body: ResearchParams, principal: Trader, queue: Queue, response: Response) -> JobOut:
    """Run the research pipeline (``python -m pipelines.run``); it ends with the promotion gate.
    A trader may: the gate promotes only on its own evidence rules (DSR, PBO, out-of-sample),
    never on the caller's say; choosing a champion by hand (``POST /models/.../promote``) is an admin's."""
    return _submitted(queue, JobKind.RESEARCH, body, principal.user_id, response)


class JobPage(BaseModel):
    """A page of jobs, oldest first."""

    items: list[JobOut]
    next_after: int | None = Field(default=None, description="pass as after_id for the next page; null: the last page")


@router.get("/jobs", response_model=JobPage, summary="Jobs, oldest first (yours; an admin's: everyone's)")
def list_jobs(
    principal: Viewer,
    queue: Queue,
    job_status: Annotated[JobStatus | None, Query(alias="status", description="only jobs in this status")] = None,
    kind: Annotated[JobKind | None, Query(description="only jobs of this kind")] = None,
    since: Since = None,
    until: Until = None,
    after_id: Annotated[int | None, Query(ge=0, le=MAX_ID, description="the next_after of the page before")] = None,
    limit: Annotated[int, Query(ge=1, le=500, description="jobs per page")] = 100,
) -> JobPage:
    """Filtered by status, kind and the time they were created (``since``/``until``, both included)."""
    lo, hi = window(since, until)
    rows = queue.jobs.jobs(
        owner_id=None if principal.is_admin else principal.user_id,
        status=job_status,
        kind=kind,
        after_id=after_id,
        since=as_datetime(lo) if lo is not None else None,
        until=as_datetime(hi) if hi is not None else None,
        limit=limit + 1,
    )
    items = [JobOut.of(r) for r in rows[:limit]]
    return JobPage(items=items, next_after=items[-1].id if len(rows) > limit else None)


@router.get("/jobs/queue", response_model=QueueOut, summary="Queue depth per queue and dead letters")
def queue_depth(principal: Viewer, queue: Queue) -> QueueOut:
    return QueueOut(
        broker="in-process" if queue.embedded else "redis",
        queues=[QueueDepthOut(queue=d.queue, ready=d.ready, delayed=d.delayed, dead_letters=d.dead_letters)
                for d in queue.depth()],
        jobs_by_status=queue.jobs.counts(owner_id=None if principal.is_admin else principal.user_id),
    )  # fmt: skip


@router.get("/jobs/{job_id}", response_model=JobOut, summary="One job: status, attempts, result or error")
def get_job(job_id: int, principal: Viewer, queue: Queue) -> JobOut:
    job = queue.jobs.get(job_id)
    principal.check_owner(job.owner_id, f"job {job_id}")
    return JobOut.of(job)
