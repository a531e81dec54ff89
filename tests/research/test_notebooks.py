"""Every notebook, executed by papermill on the bundled sample, writes what it promises."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import polars as pl
import pytest

from tradeloop.backtest import BacktestConfig
from tradeloop.data import CandleLake
from tradeloop.data.importer import import_sample
from tradeloop.research.notebooks import NOTEBOOK_DIR, NotebookError, notebook_path, run_notebook
from tradeloop.thresholds import ThresholdModel, Universe

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def research(tmp_path_factory) -> dict[str, Path]:
    """Run features -> thresholds -> backtest once; the tests read what they wrote."""
    base = tmp_path_factory.mktemp("research")
    lake = CandleLake(base / "lake")
    import_sample(lake)
    paths = {
        "lake": base / "lake",
        "features": base / "features.parquet",
        "thresholds": base / "thresholds",
        "backtest": base / "backtest",
        "runs": base / "runs",
    }
    run_notebook(
        notebook_path("features"),
        paths["runs"] / "features.ipynb",
        {"lake_dir": str(paths["lake"]), "output_path": str(paths["features"])},
        cwd=ROOT,
    )
    run_notebook(
        notebook_path("thresholds"),
        paths["runs"] / "thresholds.ipynb",
        {
            "features_path": str(paths["features"]),
            "output_dir": str(paths["thresholds"]),
            "n_trials": 8,
            "policy": {"retrain_every_days": 180, "max_model_age_days": 270},
        },
        cwd=ROOT,
    )
    run_notebook(
        notebook_path("backtest"),
        paths["runs"] / "backtest.ipynb",
        {
            "features_path": str(paths["features"]),
            "thresholds_dir": str(paths["thresholds"]),
            "output_dir": str(paths["backtest"]),
        },
        cwd=ROOT,
    )
    return paths


def test_every_notebook_has_a_tagged_parameters_cell() -> None:
    import jupytext

    for path in NOTEBOOK_DIR.glob("*.py"):
        nb = jupytext.read(path)
        tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1, path.name


def test_features_notebook_writes_features_for_each_symbol(research) -> None:
    frame = pl.read_parquet(research["features"])
    assert sorted(frame["symbol"].unique()) == ["BTC-USD", "ETH-USD"]
    assert {"rsi_14", "atr_14", "zscore_20", "close"} <= set(frame.columns)
    executed = nbformat.read(research["runs"] / "features.ipynb", as_version=4)
    injected = [c for c in executed.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert injected and str(research["features"]) in injected[0].source
    assert any(o.get("output_type") == "display_data" for c in executed.cells for o in c.get("outputs", []))


def test_thresholds_notebook_writes_a_loadable_model_and_a_resumable_study(research) -> None:
    summary = json.loads((research["thresholds"] / "tuning.json").read_text())
    assert summary["n_trials"] == 8 and summary["threshold"] >= summary["p_star"]
    model = ThresholdModel.load(research["thresholds"] / "model")
    assert model.strategy.name == "sma_cross" and model.info["symbols"] == ["BTC-USD", "ETH-USD"]
    assert model.universe == Universe(exchange="coinbase", timeframe="4h", symbols=("BTC-USD", "ETH-USD"))
    assert (research["thresholds"] / "study" / "journal.log").stat().st_size > 0


def test_backtest_notebook_reports_full_history_and_out_of_sample(research) -> None:
    metrics = json.loads((research["backtest"] / "metrics.json").read_text())
    assert metrics["oos"]["bars"] > 1000 and metrics["full_history"]["trades"] > 0
    trades = pl.read_parquet(research["backtest"] / "trades.parquet")
    assert trades.height == metrics["full_history"]["trades"]
    terms = BacktestConfig(**metrics["config"])  # the terms it ran on, so readers can state its sizing
    assert metrics["timeframe"] == "4h" and terms.cash_sharing and 0 < terms.fee_rate < 0.01


def test_template_notebook_works_out_of_the_box(research, tmp_path) -> None:
    run_notebook(
        notebook_path("template"),
        tmp_path / "t.ipynb",
        {"lake_dir": str(research["lake"]), "output_dir": str(tmp_path / "out")},
        cwd=ROOT,
    )
    assert pl.read_parquet(tmp_path / "out" / "metrics.parquet").height == 1


def test_a_failing_notebook_names_the_cell_and_keeps_the_output(tmp_path) -> None:
    with pytest.raises(NotebookError, match="KeyError|SeriesNotFound|not") as info:
        run_notebook(
            notebook_path("template"),
            tmp_path / "bad.ipynb",
            {"lake_dir": str(tmp_path / "empty"), "symbol": "NOPE-USD"},
            cwd=ROOT,
        )
    assert "bad.ipynb" in str(info.value) and (tmp_path / "bad.ipynb").exists()
    with pytest.raises(NotebookError, match="not found"):
        notebook_path("nope")
