"""Backtests and research runs as jobs, through the real HTTP stack: submitted with POST, run by
a dramatiq worker (``tradeloop worker`` over the real Redis, or the API's own worker threads
without Redis), read back with GET over PostgreSQL or SQLite."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import polars as pl
import psutil
import pytest

from api.app import create_app
from api.context import ApiContext
from tests.api.conftest import Api, free_port, pg_database, serve  # noqa: F401 - pg_database is a fixture
from tests.conftest import REDIS_URL, redis_prefix  # noqa: F401 - redis_prefix is a fixture
from tradeloop.backtest import BacktestConfig, run_backtest
from tradeloop.data import CandleLake, SeriesKey
from tradeloop.data.importer import import_sample, sample_files
from tradeloop.identity import Role
from tradeloop.jobs import JobKind, JobQueue, JobsConfig, Runner, default_runners
from tradeloop.ops import OpsStore
from tradeloop.performance import result_stats
from tradeloop.risk import RiskConfig
from tradeloop.settings import Settings
from tradeloop.strategies import get_strategy

FAST = JobsConfig(min_backoff_ms=100, max_backoff_ms=2_000)  # retries 100, 200, 400 ms (x1 to x2 jitter)
BACKTEST = {
    "strategy": "sma_cross",
    "params": {"fast": 5, "slow": 20},
    "exchange": "coinbase",
    "symbols": ["BTC-USD", "ETH-USD"],
    "timeframe": "4h",
    "start": "2024-01-01",
    "end": "2024-07-01",
    "config": {"fee_rate": 0.001, "slippage": 0.0005, "fraction": 0.5},
    "risk": {"max_open_positions": 1},
}


@dataclass
class Stack:
    api: Api
    settings: Settings
    queue: JobQueue  # the API's


def settings_for(tmp_path: Path, database_url: str, prefix: str | None) -> Settings:
    settings = Settings(
        _env_file=None,
        TRADELOOP_DATA_DIR=str(tmp_path / "data"),
        DATABASE_URL=database_url,
        REDIS_URL=REDIS_URL if prefix else None,
        TRADELOOP_REDIS_PREFIX=prefix or "unused",
    )
    lake = CandleLake(settings.lake_dir)
    if not lake.list_series():
        import_sample(lake, files=[p for p in sample_files() if p.name.startswith("coinbase__") and "__4h" in p.name])
    return settings


@contextmanager
def start_stack(
    tmp_path: Path, database_url: str, *, prefix: str | None, config: JobsConfig = FAST, runners=None
) -> Iterator[Stack]:
    """The API with its job queue: Redis under ``prefix``, or (None) in-process."""
    settings = settings_for(tmp_path, database_url, prefix)
    store = OpsStore.open(database_url)
    app = create_app(settings, context=ApiContext.from_settings(settings, store=store))
    app.state.jobs = queue = JobQueue.from_settings(settings, store=store, config=config, runners=runners)
    port = free_port()
    server, thread = serve(app, port)
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
        yield Stack(api=Api(url=str(client.base_url), ctx=app.state.context, client=client), settings=settings,
                    queue=queue)  # fmt: skip
    server.should_exit = True
    thread.join(timeout=20)
    queue.broker.close()
    store.close()


@pytest.fixture
def redis_stack(tmp_path: Path, pg_database: str, redis_prefix: str) -> Iterator[Stack]:
    """The API over PostgreSQL queueing in the real Redis; no worker runs yet."""
    with start_stack(tmp_path, pg_database, prefix=redis_prefix) as stack:
        yield stack


@pytest.fixture
def embedded_stack(tmp_path: Path) -> Iterator[Stack]:
    """The embedded default: SQLite, no Redis, the API's own worker threads."""
    with start_stack(tmp_path, f"sqlite:///{tmp_path / 'ops.db'}", prefix=None) as stack:
        yield stack


@pytest.fixture
def worker_for(redis_stack: Stack) -> Iterator:
    """Start an in-process dramatiq worker on the stack's Redis queues and database (with
    ``runners`` in place of the real work, when given)."""
    started: list[tuple[JobQueue, OpsStore]] = []

    def start(runners: dict[JobKind, Runner] | None = None) -> JobQueue:
        settings = redis_stack.settings
        store = OpsStore.open(settings.effective_database_url)
        queue = JobQueue.from_settings(settings, store=store, config=FAST, runners=runners)
        queue.start_worker(threads=2)
        started.append((queue, store))
        return queue

    yield start
    for queue, store in started:
        queue.close()
        store.close()


def wait_final(api: Api, job_id: int, headers: dict[str, str], *, timeout_s: float = 90.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = api.client.get(f"/jobs/{job_id}", headers=headers).json()
        if job["status"] in ("succeeded", "failed", "dead"):
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} still {job['status']} after {timeout_s} s: {job}")


def submit(api: Api, headers: dict[str, str], body: dict[str, Any] = BACKTEST, path: str = "/backtests") -> int:
    answer = api.client.post(path, json=body, headers=headers)
    assert answer.status_code == 202, answer.text
    assert answer.json()["status"] == "queued" and answer.headers["location"] == f"/jobs/{answer.json()['id']}"
    return answer.json()["id"]


def direct_backtest(settings: Settings) -> tuple[dict[str, Any], int]:
    """The same backtest run directly with the library, as `tradeloop backtest` runs it."""
    lake = CandleLake(settings.lake_dir)
    strategy = get_strategy("sma_cross", fast=5, slow=20)
    keys = [SeriesKey("coinbase", s, "4h") for s in ("BTC-USD", "ETH-USD")]
    lo, hi = (int(datetime(y, m, 1, tzinfo=UTC).timestamp() * 1000) for y, m in ((2024, 1), (2024, 7)))
    signals = strategy.signals(lake.read_many(keys), by="symbol").filter(pl.col("ts").is_between(lo, hi, closed="left"))
    result = run_backtest(
        signals,
        BacktestConfig(fee_rate=0.001, slippage=0.0005, fraction=0.5),
        timeframe="4h",
        risk=RiskConfig(max_open_positions=1),
    )
    return result_stats(result).strategy.as_dict(), result.trades.height


def queue_depth(api: Api, headers: dict[str, str]) -> dict[str, Any]:
    answer = api.client.get("/jobs/queue", headers=headers)
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_a_backtest_queued_over_http_runs_on_tradeloop_worker_and_matches_the_backtest_run_directly(
    redis_stack: Stack,
) -> None:
    api, settings = redis_stack.api, redis_stack.settings
    api.user("ana", Role.TRADER)
    ana = api.login("ana")
    env = os.environ | {
        "REDIS_URL": REDIS_URL,
        "TRADELOOP_REDIS_PREFIX": settings.redis_prefix,
        "DATABASE_URL": settings.effective_database_url,
        "TRADELOOP_DATA_DIR": str(settings.data_dir),
        "COLUMNS": "200",
    }
    worker = subprocess.Popen(
        [sys.executable, "-m", "tradeloop", "worker", "--threads", "1", "--grace", "20"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        job = wait_final(api, submit(api, ana), ana)
    finally:
        worker.send_signal(signal.SIGTERM)
        printed, _ = worker.communicate(timeout=60)
    assert worker.returncode == 0, printed
    assert "worker: stopped" in printed  # a graceful stop on SIGTERM
    assert job["status"] == "succeeded" and job["attempts"] == 1 and job["error"] is None, job
    metrics, trades = direct_backtest(settings)
    result = job["result"]
    assert result["trades"] == trades == result["metrics"]["trades"] and trades > 0
    assert result["metrics"] == pytest.approx({k: (None if v != v else v) for k, v in metrics.items()}, nan_ok=True)
    assert result["series"] == ["coinbase:BTC-USD:4h", "coinbase:ETH-USD:4h"]
    assert result["start"].startswith("2024-01-01") and result["end"] < "2024-07-01"
    assert result["risk_denials"] > 0  # one position at a time: the other symbol's entries were denied
    assert job["params"]["config"]["fraction"] == 0.5 and job["params"]["risk"]["max_open_positions"] == 1
    assert queue_depth(api, ana)["queues"][0] == {"queue": "backtests", "ready": 0, "delayed": 0, "dead_letters": 0}


def test_a_transient_error_is_retried_with_backoff_then_dead_lettered(redis_stack: Stack, worker_for) -> None:
    api = redis_stack.api
    api.user("ana", Role.TRADER)
    ana = api.login("ana")
    calls: list[float] = []

    def unreachable(params: dict[str, Any]) -> dict[str, Any]:
        calls.append(time.monotonic())
        raise ConnectionError("the lake's file server did not answer")

    worker_for({JobKind.BACKTEST: unreachable, JobKind.RESEARCH: unreachable})
    job = wait_final(api, submit(api, ana), ana)
    assert job["status"] == "dead" and job["attempts"] == 4, job  # the first try and 3 retries
    assert "attempt 4 hit a transient error: ConnectionError: the lake's file server did not answer" in job["error"]
    assert "dead-letter queue" in job["error"]
    gaps = [b - a for a, b in zip(calls, calls[1:], strict=False)]
    assert len(gaps) == 3
    for gap, least in zip(gaps, (0.1, 0.2, 0.4), strict=True):  # exponential: 100 ms doubled each retry
        assert gap >= least, gaps
    depth = queue_depth(api, ana)
    assert depth["broker"] == "redis" and depth["jobs_by_status"]["dead"] == 1
    assert {q["queue"]: q["dead_letters"] for q in depth["queues"]} == {"backtests": 1, "research": 0}


def test_a_transient_error_that_clears_is_retried_until_the_job_succeeds(redis_stack: Stack, worker_for) -> None:
    api, settings = redis_stack.api, redis_stack.settings
    api.user("ana", Role.TRADER)
    ana = api.login("ana")
    real = default_runners(settings, FAST)[JobKind.BACKTEST]
    failures = [OSError("Stale file handle"), TimeoutError("the database did not answer")]

    def flaky(params: dict[str, Any]) -> dict[str, Any]:
        if failures:
            raise failures.pop(0)
        return real(params)

    worker_for({JobKind.BACKTEST: flaky, JobKind.RESEARCH: flaky})
    job = wait_final(api, submit(api, ana), ana)
    assert job["status"] == "succeeded" and job["attempts"] == 3, job
    assert job["error"] is None and job["result"]["trades"] == direct_backtest(settings)[1]
    assert all(q["dead_letters"] == 0 for q in queue_depth(api, ana)["queues"])


def test_queue_depth_counts_the_jobs_waiting_while_no_worker_runs(redis_stack: Stack, worker_for) -> None:
    api = redis_stack.api
    api.user("ana", Role.TRADER)
    ana = api.login("ana")
    ids = [submit(api, ana) for _ in range(3)] + [submit(api, ana, {"trials": 2}, "/research-runs")]
    depth = queue_depth(api, ana)
    assert {q["queue"]: q["ready"] for q in depth["queues"]} == {"backtests": 3, "research": 1}
    assert depth["jobs_by_status"]["queued"] == 4
    done = {"backtest": lambda params: {"ok": True}, "research": lambda params: {"ok": True}}
    worker_for({JobKind(k): f for k, f in done.items()})
    assert {wait_final(api, i, ana)["status"] for i in ids} == {"succeeded"}
    depth = queue_depth(api, ana)
    assert {q["queue"]: q["ready"] for q in depth["queues"]} == {"backtests": 0, "research": 0}
    assert depth["jobs_by_status"] == {"queued": 0, "running": 0, "succeeded": 4, "failed": 0, "dead": 0}


def test_bad_parameters_are_refused_or_fail_the_job_at_once_without_retry(embedded_stack: Stack) -> None:
    api = embedded_stack.api
    api.user("ana", Role.TRADER)
    ana = api.login("ana")
    refused = api.client.post("/backtests", json=BACKTEST | {"params": {"fast": "ten"}}, headers=ana)
    assert refused.status_code == 422 and refused.headers["content-type"] == "application/problem+json"
    assert "fast='ten'" in refused.text  # the strategy's schema names the parameter
    refused = api.client.post("/backtests", json=BACKTEST | {"config": {"fee": 0.001}}, headers=ana)
    assert refused.status_code == 422 and "body.config.fee" in [e["field"] for e in refused.json()["errors"]]
    missing = submit(api, ana, BACKTEST | {"symbols": ["SOL-USD"]})  # valid, but the lake has no such series
    job = wait_final(api, missing, ana)
    assert job["status"] == "failed" and job["attempts"] == 1, job
    assert "no candles stored for coinbase:SOL-USD:4h" in job["error"]
    time.sleep(0.5)  # a retry would have started by now (100 ms backoff)
    assert api.client.get(f"/jobs/{missing}", headers=ana).json()["attempts"] == 1
    depth = queue_depth(api, ana)
    assert depth["broker"] == "in-process" and all(q["dead_letters"] == 0 for q in depth["queues"])
    assert api.client.get("/jobs", params={"status": "failed"}, headers=ana).json()["items"][0]["id"] == missing


def test_without_redis_the_api_runs_a_backtest_in_its_own_process(embedded_stack: Stack) -> None:
    api, settings = embedded_stack.api, embedded_stack.settings
    api.user("ana", Role.TRADER)
    ana = api.login("ana")
    job = wait_final(api, submit(api, ana), ana)
    assert job["status"] == "succeeded", job
    metrics, trades = direct_backtest(settings)
    assert job["result"]["trades"] == trades
    assert job["result"]["metrics"]["total_return"] == pytest.approx(metrics["total_return"])
    assert job["result"]["metrics"]["max_drawdown"] == pytest.approx(metrics["max_drawdown"])


def test_a_research_run_past_its_time_limit_is_stopped_and_failed(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'ops.db'}"
    with start_stack(tmp_path, database, prefix=None, config=JobsConfig(research_time_limit_s=1.0)) as stack:
        api = stack.api
        api.user("ana", Role.TRADER)
        ana = api.login("ana")
        started = time.monotonic()
        job = wait_final(api, submit(api, ana, {"trials": 2, "workers": 1}, "/research-runs"), ana)
        assert time.monotonic() - started < 30  # stopped, not run to its end
        assert job["status"] == "failed" and job["attempts"] == 1, job
        assert "passed its time limit of 1 s and was stopped" in job["error"]
        assert job["params"] == {"strategy": None, "until": None, "trials": 2, "workers": 1, "seed": None}


def test_a_backtest_past_its_time_limit_is_interrupted_and_failed(tmp_path: Path) -> None:
    def endless(params: dict[str, Any]) -> dict[str, Any]:
        while True:  # pure Python: dramatiq's time limit interrupts it between two lines
            time.sleep(0.01)

    database = f"sqlite:///{tmp_path / 'ops.db'}"
    config = JobsConfig(backtest_time_limit_s=1.0)
    runners = {JobKind.BACKTEST: endless, JobKind.RESEARCH: endless}
    with start_stack(tmp_path, database, prefix=None, config=config, runners=runners) as stack:
        api = stack.api
        api.user("ana", Role.TRADER)
        ana = api.login("ana")
        job = wait_final(api, submit(api, ana), ana, timeout_s=30)
        assert job["status"] == "failed" and job["attempts"] == 1, job
        assert job["error"] == "the backtest job passed its time limit of 1 s and was stopped"


def test_a_research_run_is_stopped_with_its_worker_and_queued_again(embedded_stack: Stack) -> None:
    api, queue = embedded_stack.api, embedded_stack.queue
    api.user("ana", Role.TRADER)
    ana = api.login("ana")
    job_id = submit(api, ana, {"trials": 2, "workers": 1}, "/research-runs")
    me = psutil.Process()
    deadline = time.monotonic() + 30
    runs: list[psutil.Process] = []
    while not runs and time.monotonic() < deadline:
        runs = [p for p in me.children(recursive=True) if "pipelines.run" in " ".join(p.cmdline())]
        time.sleep(0.1)
    assert runs, "the research run's child process never started"
    assert api.client.get(f"/jobs/{job_id}", headers=ana).json()["status"] == "running"
    queue.stop_worker(timeout_s=20)  # what SIGTERM to `tradeloop worker` does, and the API's shutdown
    gone, alive = psutil.wait_procs(runs, timeout=10)
    assert not alive  # the pipeline did not run on as an orphan
    job = api.client.get(f"/jobs/{job_id}", headers=ana).json()
    assert job["status"] == "queued" and job["attempts"] == 1, job
    assert job["error"] == "attempt 1 was stopped with its worker; it runs again on a worker"
    assert queue.resend_unfinished() == [job_id]  # what the next process does at start-up


def test_a_user_sees_only_their_own_jobs_and_an_admin_sees_all(redis_stack: Stack) -> None:
    api = redis_stack.api
    ana_id = api.user("ana", Role.TRADER)
    api.user("bob", Role.TRADER)
    api.user("vera", Role.VIEWER)
    api.user("root", Role.ADMIN)
    ana, bob, vera, root = (api.login(n) for n in ("ana", "bob", "vera", "root"))
    first, second = submit(api, ana), submit(api, ana, {"until": "2024-01-01"}, "/research-runs")
    other = api.client.get(f"/jobs/{first}", headers=bob)
    assert other.status_code == 404 and other.json()["detail"] == f"job {first} does not exist"
    assert api.client.get("/jobs/999999", headers=bob).json()["detail"] == "job 999999 does not exist"  # the same
    assert api.client.get("/jobs", headers=bob).json() == {"items": [], "next_after": None}
    assert queue_depth(api, bob)["jobs_by_status"]["queued"] == 0  # the depth is everyone's; the counts are his
    assert api.client.post("/backtests", json=BACKTEST, headers=vera).status_code == 403  # a viewer reads only
    assert api.client.get(f"/jobs/{first}", headers=root).json()["owner_id"] == ana_id
    seen = api.client.get("/jobs", params={"limit": 1}, headers=root).json()
    assert [j["id"] for j in seen["items"]] == [first] and seen["next_after"] == first
    rest = api.client.get("/jobs", params={"after_id": first}, headers=root).json()
    assert [j["id"] for j in rest["items"]] == [second] and rest["next_after"] is None
    research = api.client.get("/jobs", params={"kind": "research"}, headers=ana).json()["items"]
    assert [(j["id"], j["params"]["until"]) for j in research] == [(second, "2024-01-01")]
    later = api.client.get("/jobs", params={"since": str(int(time.time() * 1000) + 60_000)}, headers=ana).json()
    assert later["items"] == []
    bad = api.client.get("/jobs", params={"since": "yesterday"}, headers=ana)
    assert bad.status_code == 422 and "query.since" in bad.text


@pytest.mark.slow
def test_a_research_run_job_runs_the_pipeline_and_reports_its_dagster_run_and_champion(embedded_stack: Stack) -> None:
    import dagster as dg

    from tradeloop.registry import ModelRegistry

    api, settings = embedded_stack.api, embedded_stack.settings
    api.user("ana", Role.TRADER)
    ana = api.login("ana")
    body = {"strategy": "breakout", "until": "2020-01-01", "trials": 2, "workers": 1, "seed": 7}
    job = wait_final(api, submit(api, ana, body, "/research-runs"), ana, timeout_s=280)
    assert job["status"] == "succeeded", job
    result = job["result"]
    assert result["exit_code"] == 0 and "champion goes stale at" in result["output_tail"]
    with dg.DagsterInstance.from_config(str(settings.dagster_dir)) as instance:  # where `dagster dev` looks
        run = instance.get_run_by_id(result["run_id"])
        assert run is not None and run.status == dg.DagsterRunStatus.SUCCESS
    entry = ModelRegistry(settings.registry_dir).champion("breakout")
    if result["champion"] is None:
        assert entry is None  # the gate refused the candidate
    else:
        assert result["champion"]["strategy"] == "breakout" and entry.artifact.startswith(
            result["champion"]["artifact"]
        )
        assert entry.lineage.run_id == result["run_id"]
