"""The template notebook on first run: paths from the settings, and what a quant looks at first."""

from __future__ import annotations

from pathlib import Path

import nbformat
import polars as pl

from tradeloop.data import CandleLake
from tradeloop.data.importer import import_file
from tradeloop.research.notebooks import notebook_path, run_notebook

ROOT = Path(__file__).resolve().parents[2]
PLOTLY = "application/vnd.plotly.v1+json"


def test_template_reads_the_settings_lake_from_any_folder_and_shows_stats_and_charts(tmp_path, monkeypatch) -> None:
    data_dir = tmp_path / "data"
    lake = CandleLake(data_dir / "lake")
    for name in ("coinbase__BTC-USD__4h", "coinbase__ETH-USD__4h"):
        import_file(lake, ROOT / "data" / "sample" / f"{name}.parquet")
    elsewhere = tmp_path / "kernel-starts-here"
    elsewhere.mkdir()
    monkeypatch.setenv("TRADELOOP_DATA_DIR", str(data_dir))  # the kernel inherits it, as from `make lab`
    run_notebook(notebook_path("template"), tmp_path / "t.ipynb", {}, cwd=elsewhere)

    scratch = data_dir / "research" / "scratch"
    assert pl.read_parquet(scratch / "metrics.parquet").height == 1
    assert pl.read_parquet(scratch / "trades.parquet").height > 100
    assert "Plotly.newPlot" in (scratch / "report.html").read_text(encoding="utf-8")
    assert not any(elsewhere.iterdir())  # nothing written where the kernel started

    executed = nbformat.read(tmp_path / "t.ipynb", as_version=4)
    outputs = [o for c in executed.cells if c.cell_type == "code" for o in c.outputs]
    html = [o["data"]["text/html"] for o in outputs if "text/html" in o.get("data", {})]
    assert any("buy &amp; hold" in h and "max drawdown" in h and "per symbol" in h for h in html)
    assert any("BTC-USD" in h and "ETH-USD" in h and "buy &amp; hold" in h for h in html[1:])  # per-symbol table
    figures = [o["data"][PLOTLY] for o in outputs if PLOTLY in o.get("data", {})]
    names = [{t.get("name") for t in fig["data"]} for fig in figures]
    assert {"strategy", "drawdown", "buy & hold"} <= names[0]  # equity with drawdown and benchmark
    assert {"candles", "entries", "exits"} <= names[1]  # trades on the price
    assert figures[2]["data"][0]["type"] == "heatmap"  # monthly returns
    assert len(figures) == 4
