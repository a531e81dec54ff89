"""The ``jobs`` table (``tradeloop.ops.Job``): one row per job, the system of record of its
status; the queue's message carries only the row's id.

Rules:

1. A final status (``succeeded``, ``failed``, ``dead``) is never left: a message delivered
   again for a finished job finds :meth:`JobStore.start` answering None and does nothing.
2. :meth:`JobStore.start` takes a ``queued`` or ``running`` job (``running``: its worker died
   and the queue redelivered it) to ``running`` and counts the attempt.
3. Every change is one conditional ``UPDATE`` (it locks the row), then the row is read.
4. ``error`` keeps the last attempt's error (cut to 500 characters) until the job succeeds.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import CursorResult, func, select, update

from tradeloop.errors import NotFoundError
from tradeloop.jobs.model import JobKind, JobStatus
from tradeloop.ops import Job, OpsStore

ERROR_CHARS = 500


def utc_now() -> datetime:
    return datetime.now(UTC)


def cut(text: str, limit: int = ERROR_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


class JobStore:
    """The jobs table through an :class:`OpsStore`'s transactions (module rules)."""

    def __init__(self, store: OpsStore, *, clock: Callable[[], datetime] = utc_now):
        self.store, self.clock = store, clock

    def create(self, kind: JobKind, params: dict[str, Any], *, owner_id: int | None) -> Job:
        """A new ``queued`` job (its message is sent by the queue, after this commits)."""
        with self.store.transaction() as db:
            job = Job(
                owner_id=owner_id,
                kind=JobKind(kind).value,
                status=JobStatus.QUEUED.value,
                params=params,
                attempts=0,
                created_at=self.clock(),
            )
            db.add(job)
            db.flush()
            return job

    def _update(self, job_id: int, **values: Any) -> Job | None:
        """One UPDATE of a job that is not final (rule 1), then the row; None when none matched.
        Writing first locks the row at once (PostgreSQL) and takes SQLite's write lock before
        reading, so two workers never deadlock upgrading a read."""
        open_statuses = [s.value for s in JobStatus if not s.final]
        with self.store.transaction() as db:
            done = db.execute(update(Job).where(Job.id == job_id, Job.status.in_(open_statuses)).values(**values))
            if cast(CursorResult[Any], done).rowcount == 0:
                return None
            return db.get(Job, job_id)

    def start(self, job_id: int) -> Job | None:
        """Rule 2: the job, now ``running``; None when it is gone or final (rule 1)."""
        return self._update(job_id, status=JobStatus.RUNNING.value, attempts=Job.attempts + 1, started_at=self.clock())

    def _finish(self, job_id: int, status: JobStatus, **values: Any) -> Job | None:
        if status.final:
            values["finished_at"] = self.clock()
        return self._update(job_id, status=status.value, **values)

    def succeed(self, job_id: int, result: dict[str, Any]) -> Job | None:
        return self._finish(job_id, JobStatus.SUCCEEDED, result=result, error=None)

    def fail(self, job_id: int, error: str) -> Job | None:
        """Failed for good: an error a retry would repeat."""
        return self._finish(job_id, JobStatus.FAILED, error=cut(error))

    def retrying(self, job_id: int, error: str) -> Job | None:
        """Back to ``queued``: the attempt hit a transient error and the queue retries it."""
        return self._finish(job_id, JobStatus.QUEUED, error=cut(error))

    def dead(self, job_id: int, error: str) -> Job | None:
        """Every retry hit a transient error; the message is in the dead-letter queue."""
        return self._finish(job_id, JobStatus.DEAD, error=cut(error))

    # ------------------------------------------------------------------ reads
    def get(self, job_id: int) -> Job:
        with self.store.transaction() as db:
            job = db.get(Job, job_id)
            if job is None:
                raise NotFoundError(f"job {job_id} does not exist")
            return job

    def jobs(
        self,
        *,
        owner_id: int | None = None,
        status: JobStatus | None = None,
        kind: JobKind | None = None,
        after_id: int | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
    ) -> list[Job]:
        """Jobs in id order (oldest first), ``limit`` of them after ``after_id``; ``owner_id``
        None: everyone's. ``since``/``until``: created within them (both included)."""
        query = select(Job).order_by(Job.id).limit(limit)
        if owner_id is not None:
            query = query.where(Job.owner_id == owner_id)
        if status is not None:
            query = query.where(Job.status == JobStatus(status).value)
        if kind is not None:
            query = query.where(Job.kind == JobKind(kind).value)
        if after_id is not None:
            query = query.where(Job.id > after_id)
        if since is not None:
            query = query.where(Job.created_at >= since)
        if until is not None:
            query = query.where(Job.created_at <= until)
        with self.store.transaction() as db:
            return list(db.scalars(query))

    def counts(self, *, owner_id: int | None = None) -> dict[str, int]:
        """Jobs per status (every status, zero included); ``owner_id`` None: everyone's."""
        query = select(Job.status, func.count()).group_by(Job.status)
        if owner_id is not None:
            query = query.where(Job.owner_id == owner_id)
        with self.store.transaction() as db:
            found = {status: int(n) for status, n in db.execute(query)}
        return {s.value: found.get(s.value, 0) for s in JobStatus}

    def unfinished(self) -> list[Job]:
        """``queued`` and ``running`` jobs, oldest first."""
        unfinished = (JobStatus.QUEUED.value, JobStatus.RUNNING.value)
        with self.store.transaction() as db:
            return list(db.scalars(select(Job).where(Job.status.in_(unfinished)).order_by(Job.id)))
