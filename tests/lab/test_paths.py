"""Where notebooks look: a lake that is not where the settings say is named as a path
problem (not a missing import), and links into JupyterLab point inside its root only."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from tradeloop.data import CandleLake, SeriesKey
from tradeloop.errors import SeriesNotFoundError
from tradeloop.research.notebooks import LAB_CONFIG_DIR, ResearchPaths, lab_environment, lab_link

KEY = SeriesKey("coinbase", "BTC-USD", "4h")


def test_a_lake_folder_that_does_not_exist_is_named_with_the_working_directory(tmp_path, monkeypatch) -> None:
    kernel_dir = tmp_path / "notebooks"
    kernel_dir.mkdir()
    monkeypatch.chdir(kernel_dir)  # where JupyterLab starts a kernel
    with pytest.raises(SeriesNotFoundError) as caught:
        CandleLake(Path("data") / "lake").read(KEY)
    message = str(caught.value)
    assert f"the lake folder {kernel_dir / 'data' / 'lake'}" in message and "does not exist" in message
    assert f"taken from the working directory {kernel_dir}" in message
    assert "TRADELOOP_DATA_DIR" in message
    assert message.index("TRADELOOP_DATA_DIR") < message.index("tradeloop data import")  # the path first


def test_an_empty_lake_folder_says_it_is_empty(tmp_path) -> None:
    (tmp_path / "lake").mkdir()
    with pytest.raises(SeriesNotFoundError) as caught:
        CandleLake(tmp_path / "lake").read(KEY)
    assert f"the lake folder {tmp_path / 'lake'} is empty; " in str(caught.value)
    assert "TRADELOOP_DATA_DIR" in str(caught.value)


def test_a_lake_with_other_series_lists_them(tmp_path, btc_4h: pl.DataFrame) -> None:
    lake = CandleLake(tmp_path / "lake")
    lake.write(KEY, btc_4h.head(50), source="test")
    with pytest.raises(SeriesNotFoundError, match=r"stored series: coinbase:BTC-USD:4h\)") as caught:
        lake.read(SeriesKey("coinbase", "ETH-USD", "4h"))
    assert "does not exist" not in str(caught.value)


def test_lab_links_point_inside_labs_root_only(tmp_path) -> None:
    run = tmp_path / "data" / "runs" / "a run" / "features.ipynb"
    assert (
        lab_link(run, lab_url="http://127.0.0.1:8890/", lab_root=tmp_path)
        == "http://127.0.0.1:8890/lab/tree/data/runs/a%20run/features.ipynb"
    )
    assert lab_link(Path("/elsewhere/x.ipynb"), lab_url="http://127.0.0.1:8888", lab_root=tmp_path) is None


def test_notebook_paths_and_lab_environment() -> None:
    paths = ResearchPaths.under(Path("r"))
    assert (paths.features, paths.thresholds, paths.backtest) == (
        Path("r/features.parquet"),
        Path("r/thresholds"),
        Path("r/backtest"),
    )
    env = lab_environment({"JUPYTER_CONFIG_PATH": "/mine", "OTHER": "1"})
    assert env["JUPYTER_CONFIG_PATH"].split(":") == [str(LAB_CONFIG_DIR), "/mine"] and env["OTHER"] == "1"
    assert (LAB_CONFIG_DIR / "jupyter_lab_config.py").exists()
    assert (LAB_CONFIG_DIR / "lab" / "settings" / "overrides.json").exists()
