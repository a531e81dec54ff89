"""`python -m pipelines.run` as `make demo` runs it, from a folder of its own with a relative
TRADELOOP_DATA_DIR and no DAGSTER_HOME: its runs land in <data>/dagster, the instance
`dagster dev` opens under `tradeloop up` (Settings.dagster_dir), and the notebooks, which run
in the repository, read and write that data folder, not the repository's."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from tradeloop.settings import Settings


@pytest.mark.slow
def test_pipelines_run_records_its_runs_where_dagster_dev_looks(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}
    env |= {"TRADELOOP_DATA_DIR": "data", "TRADELOOP_LOG_LEVEL": "WARNING"}
    out = subprocess.run(
        [sys.executable, "-m", "pipelines.run", "--trials", "2", "--workers", "1", "--until", "2020-01-01"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    # concise by default: progress and the gate, no Dagster event flood, no kernel warnings, no ERROR lines
    printed = out.stdout + out.stderr
    assert "optuna: 2/2 trials finished" in printed and "Promotion gate" in out.stdout
    for noise in (" - DEBUG - ", " - INFO - ", "IPKernelApp", "ERROR", "Traceback"):
        assert noise not in printed, noise
    home = tmp_path / "data" / "dagster"
    assert Settings(_env_file=None, TRADELOOP_DATA_DIR=str(tmp_path / "data")).dagster_dir == home
    assert "enabled: false" in (home / "dagster.yaml").read_text()  # no first-start pop-up, no telemetry
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert instance.get_settings("nux") == {"enabled": False}
        runs = instance.get_runs()
        assert len(runs) == 3 and {r.status for r in runs} == {dg.DagsterRunStatus.SUCCESS}  # 2 symbols + chain
        reported = [r.run_id for r in runs if r.run_id in out.stdout]
        assert len(reported) == 1  # the research chain's run, which it printed
        assert sorted(instance.get_dynamic_partitions("symbols")) == ["BTC-USD", "ETH-USD"]
        backtest = instance.get_latest_materialization_event(dg.AssetKey("backtest")).asset_materialization
        assert isinstance(backtest.metadata["metrics"], dg.MarkdownMetadataValue)
    assert (tmp_path / "data" / "research" / "features.parquet").exists()  # not the repository's data/
    assert [p.name for p in (tmp_path / "data" / "runs").iterdir()] == reported  # its executed notebooks
