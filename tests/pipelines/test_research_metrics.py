"""The research pipeline's metrics (``pipelines.metrics``) from a real Dagster instance's run
records (runs executed in it: one succeeds, one fails) and a real registry's champion, as a
Prometheus scrape sees them, and served by ``python -m pipelines.metrics``."""

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import dagster as dg
from prometheus_client import generate_latest
from prometheus_client.core import REGISTRY

from pipelines.metrics import read_figures, watch_research
from tests.registry.test_registry import saved_model
from tradeloop.registry import Lineage, ModelRegistry

ROOT = Path(__file__).resolve().parents[2]


@dg.op
def works() -> int:
    return 1


@dg.op
def breaks() -> int:
    raise RuntimeError("the study found no trial")


@dg.job
def retrain() -> None:
    works()


@dg.job
def refresh_candles() -> None:
    breaks()


def runs_in(home: Path) -> dg.DagsterInstance:
    home.mkdir(parents=True, exist_ok=True)
    instance = dg.DagsterInstance.from_config(str(home))
    assert retrain.execute_in_process(instance=instance).success
    assert not refresh_candles.execute_in_process(instance=instance, raise_on_error=False).success
    return instance


def test_the_run_records_and_the_champion_become_series(tmp_path) -> None:
    before = time.time()
    instance = runs_in(tmp_path / "dagster")
    registry = ModelRegistry(tmp_path / "registry")
    registry.promote("sma_cross", registry.register(saved_model(tmp_path / "m", 1)), lineage=Lineage(run_id="r"))
    figures = read_figures(instance, registry, now_s=time.time())
    assert figures.runs == [(("refresh_candles", "failure"), 1.0), (("retrain", "success"), 1.0)]
    assert [labels for labels, _ in figures.duration] == [("refresh_candles", "failure"), ("retrain", "success")]
    assert all(0 < seconds < time.time() - before for _, seconds in figures.duration)
    assert [labels for labels, _ in figures.last_success] == [("retrain",)]
    assert [labels for labels, _ in figures.last_failure] == [("refresh_candles",)]
    assert all(before <= t <= time.time() for _, t in figures.last_success + figures.last_failure)
    [(strategy, promoted)] = figures.promoted
    assert strategy == ("sma_cross",) and before - 1 <= promoted <= time.time()

    watch_research(instance, registry)
    text = generate_latest(REGISTRY).decode()
    assert 'tradeloop_dagster_runs{pipeline="retrain",status="success"} 1.0' in text
    assert 'tradeloop_dagster_last_failure_timestamp_seconds{pipeline="refresh_candles"}' in text
    assert 'tradeloop_champion_promoted_timestamp_seconds{strategy="sma_cross"}' in text


def test_python_m_pipelines_metrics_serves_them(tmp_path) -> None:
    runs_in(tmp_path / "data" / "dagster")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "TRADELOOP_DATA_DIR": str(tmp_path / "data"), "TRADELOOP_METRICS_PORT": str(port)}
    env.pop("DAGSTER_HOME", None)
    proc = subprocess.Popen([sys.executable, "-m", "pipelines.metrics"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        deadline, text = time.monotonic() + 60, ""
        while "tradeloop_dagster_runs{" not in text:
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            assert time.monotonic() < deadline, "no research metrics after 60 s"
            try:
                text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
            except OSError:
                time.sleep(0.5)
        assert 'tradeloop_dagster_runs{pipeline="refresh_candles",status="failure"} 1.0' in text
        assert "process_resident_memory_bytes" in text
    finally:
        proc.terminate()
        assert proc.wait(timeout=20) == 0
