"""Long jobs (backtests, research runs) on a queue: submitted by the API, run by workers
(``tradeloop worker``, or in-process without Redis), with retries, a dead-letter queue and
time limits. ``tradeloop.jobs.queue`` states the rules; the ``jobs`` table is the record."""

from tradeloop.jobs.backtest import run_backtest_job
from tradeloop.jobs.model import BacktestParams, JobKind, JobStatus, JobTimeLimitError, ResearchParams
from tradeloop.jobs.queue import QUEUES, JobQueue, JobsConfig, QueueDepth, Runner, default_runners, transient
from tradeloop.jobs.research import run_research_job
from tradeloop.jobs.store import JobStore

__all__ = [
    "QUEUES",
    "BacktestParams",
    "JobKind",
    "JobQueue",
    "JobStatus",
    "JobStore",
    "JobTimeLimitError",
    "JobsConfig",
    "QueueDepth",
    "ResearchParams",
    "Runner",
    "default_runners",
    "run_backtest_job",
    "run_research_job",
    "transient",
]
