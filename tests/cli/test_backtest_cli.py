"""`tradeloop backtest` as a user runs it: stats beside buy and hold, --from/--to, --report, --export."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

from tradeloop.data import CandleLake
from tradeloop.data.importer import import_file

ROOT = Path(__file__).resolve().parents[2]
SERIES = ["--series", "coinbase:BTC-USD:4h", "--series", "coinbase:ETH-USD:4h"]


def tradeloop(*args: str, data_dir: Path, cwd: Path | None = None, columns: int = 200) -> subprocess.CompletedProcess:
    env = {**os.environ, "TRADELOOP_DATA_DIR": str(data_dir), "COLUMNS": str(columns)}
    return subprocess.run(
        [sys.executable, "-m", "tradeloop", *args], capture_output=True, text=True, env=env, timeout=300, cwd=cwd
    )


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("backtest-cli")
    lake = CandleLake(base / "lake")
    for name in ("coinbase__BTC-USD__4h", "coinbase__ETH-USD__4h"):
        import_file(lake, ROOT / "data" / "sample" / f"{name}.parquet")
    return base


def _ms(day: str) -> int:
    return int(datetime.fromisoformat(day).replace(tzinfo=UTC).timestamp() * 1000)


def test_range_report_and_csv_export(data_dir: Path, tmp_path: Path) -> None:
    out = tradeloop(
        "backtest",
        "sma_cross",
        *SERIES,
        "--shared-cash",
        "--fraction",
        "0.5",
        "--from",
        "2024-01-01",
        "--to",
        "2024-06-30",
        "--report",
        str(tmp_path / "out.html"),
        "--export",
        str(tmp_path / "trades.csv"),
        data_dir=data_dir,
    )
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "sma_cross(10,30) on coinbase:BTC-USD:4h, coinbase:ETH-USD:4h" in text
    assert "strategy" in text and "buy & hold" in text and "per symbol" in text
    # --to as a date keeps that whole day: the last 4h bar opens at 20:00 on June 30
    assert "2024-01-01 00:00" in text and "2024-06-30 20:00" in text and "1,092 x 4h" in text
    assert "%" in text.split("total return", 1)[1].splitlines()[0]
    trades = pl.read_csv(tmp_path / "trades.csv")
    assert f"trades: {tmp_path / 'trades.csv'} ({trades.height:,} rows)" in text
    assert trades.height > 10 and {"entry_time", "exit_time", "symbol", "pnl", "return"} <= set(trades.columns)
    assert trades["entry_ts"].min() >= _ms("2024-01-01") and trades["exit_ts"].max() < _ms("2024-07-01")
    assert trades["entry_time"][0].startswith("2024-01")
    page = (tmp_path / "out.html").read_text(encoding="utf-8")
    assert f"report: {tmp_path / 'out.html'}" in text
    assert '<script src="http' not in page and "Plotly.newPlot" in page
    assert page.split("<h2>Trades</h2>", 1)[1].count("<tr>") == trades.height + 1


def test_parquet_export_and_a_short_range_says_annual_figures_do_not_apply(data_dir: Path, tmp_path: Path) -> None:
    out = tradeloop(
        "backtest",
        "sma_cross",
        *SERIES,
        "--param",
        "fast=3",
        "--param",
        "slow=8",
        "--from",
        "2024-03-01",
        "--to",
        "2024-03-10",
        "--export",
        str(tmp_path / "t.parquet"),
        data_dir=data_dir,
    )
    assert out.returncode == 0, out.stderr
    assert "n/a: 10 days < 30" in out.stdout and "CAGR" in out.stdout
    assert "shorter than 30: annualised figures" in out.stdout
    trades = pl.read_parquet(tmp_path / "t.parquet")
    assert trades.schema["entry_time"] == pl.Datetime("ms", "UTC")
    assert trades["entry_ts"].min() >= _ms("2024-03-01")


def test_per_symbol_table_fits_a_narrow_terminal_and_wide_shows_all(data_dir: Path) -> None:
    narrow = tradeloop("backtest", "sma_cross", *SERIES, "--from", "2024-01-01", data_dir=data_dir, columns=80)
    assert narrow.returncode == 0, narrow.stderr
    assert max(len(line) for line in narrow.stdout.splitlines()) <= 80
    assert "not shown at this width" in narrow.stdout and "--wide shows them" in narrow.stdout
    assert "buy & hold" in narrow.stdout.split("per symbol", 1)[1]  # the benchmark column stays
    wide = tradeloop("backtest", "sma_cross", *SERIES, "--from", "2024-01-01", "--wide", data_dir=data_dir, columns=80)
    assert wide.returncode == 0 and "avg duration" in wide.stdout and "not shown" not in wide.stdout


@pytest.mark.parametrize(
    ("args", "code", "expected"),
    [
        (["--from", "2024-13-01"], 2, ["--from='2024-13-01' is not a time", "ISO date like 2024-01-31"]),
        (["--to", "June"], 2, ["--to='June' is not a time"]),
        (
            ["--from", "2024-07-01", "--to", "2024-06-30"],
            2,
            ["--from 2024-07-01 is after --to 2024-06-30", "give --from before --to"],
        ),
        (
            ["--export", "trades.xlsx"],
            2,
            ["--export='trades.xlsx'", "'.xlsx'", "end the file name in .csv or .parquet"],
        ),
        (["--export", "trades"], 2, ["--export='trades'", "(none)"]),
        (["--report", "report.pdf"], 2, ["--report='report.pdf'", "end the file name in .html"]),
        # the engine's "two candles for one (symbol, ts); deduplicate it" meant nothing to a CLI user
        (["--series", "coinbase:ETH-USD:4h"], 2, ["--series coinbase:ETH-USD:4h is given twice; give it once"]),
        (
            ["--series", "kraken:BTC-USD:4h"],
            2,
            ["--series coinbase:BTC-USD:4h and kraken:BTC-USD:4h are both BTC-USD", "one exchange per symbol"],
        ),
        # a compact date read as epoch ms (1970): --from was silently ignored, the whole history backtested
        (
            ["--from", "20240101"],
            2,
            ["--from=20240101 reads as epoch milliseconds (1970-01-01 05:37 UTC)", "e.g. 2024-01-01"],
        ),
        (["--to", "1719705600"], 2, ["--to=1719705600 reads as epoch milliseconds", "epoch milliseconds (13 digits"]),
        (
            ["--from", "2030-01-01"],
            3,
            [
                "no bars of coinbase:BTC-USD:4h, coinbase:ETH-USD:4h in --from 2030-01-01",
                "coinbase:BTC-USD:4h covers 2016-05-18",
                "to 2025-10-28",
                "pick dates inside that range",
            ],
        ),
    ],
)
def test_bad_dates_ranges_and_file_names_are_refused(
    data_dir: Path, tmp_path: Path, args: list[str], code: int, expected: list[str]
) -> None:
    out = tradeloop("backtest", "sma_cross", *SERIES, *args, data_dir=data_dir, cwd=tmp_path)
    assert out.returncode == code, out.stdout + out.stderr
    assert out.stderr.startswith("error: ") and "Traceback" not in out.stderr
    for text in expected:
        assert text in out.stderr, (text, out.stderr)
    assert not list(tmp_path.iterdir())  # refused before any file is written


def test_report_and_export_paths_that_cannot_be_written_are_refused_before_the_backtest(
    data_dir: Path, tmp_path: Path
) -> None:
    # they ran the whole backtest, printed the stats and then crashed with an IsADirectoryError traceback
    (tmp_path / "report.html").mkdir()
    (tmp_path / "notes.txt").write_text("not a folder")
    for args, expected in (
        (["--report", "report.html"], "--report='report.html' is a folder; give a file name in it"),
        (["--export", "notes.txt/trades.csv"], f"--export='notes.txt/trades.csv': {Path('notes.txt')} is a file"),
        (["--report", "notes.txt/deeper/r.html"], "is a file, not a folder"),
    ):
        out = tradeloop("backtest", "sma_cross", *SERIES, *args, data_dir=data_dir, cwd=tmp_path)
        assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
        assert out.stderr.startswith("error: ") and expected in out.stderr, out.stderr
        assert out.stdout == ""  # refused before the backtest ran
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt", "report.html"]


def test_a_series_without_bars_in_the_range_is_named_not_silently_dropped(tmp_path: Path) -> None:
    lake = CandleLake(tmp_path / "lake")
    import_file(lake, ROOT / "data" / "sample" / "coinbase__BTC-USD__4h.parquet")
    late = pl.read_parquet(ROOT / "data" / "sample" / "coinbase__ETH-USD__4h.parquet").filter(
        pl.col("ts") >= _ms("2024-06-01")
    )
    late.write_parquet(tmp_path / "coinbase__ETH-USD__4h.parquet")
    import_file(lake, tmp_path / "coinbase__ETH-USD__4h.parquet")
    out = tradeloop("backtest", "sma_cross", *SERIES, "--from", "2024-01-01", "--to", "2024-03-31", data_dir=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "note: coinbase:ETH-USD:4h has no bars in --from 2024-01-01 --to 2024-03-31: left out" in out.stdout
    assert "sma_cross(10,30) on coinbase:BTC-USD:4h\n" in out.stdout  # the header names what was backtested
