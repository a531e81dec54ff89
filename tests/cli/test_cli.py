"""The `tradeloop` command as a user runs it: real processes, exit codes, messages."""

import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from exchange_server import BinanceLoopback


def tradeloop(*args: str, data_dir: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "TRADELOOP_DATA_DIR": str(data_dir), "COLUMNS": "200", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "tradeloop", *args], capture_output=True, text=True, env=full_env, timeout=300
    )


@pytest.mark.parametrize(
    "cmd", [[], ["demo"], ["backtest"], ["data"], ["data", "import"], ["data", "ingest"], ["data", "status"]]
)
def test_help_everywhere(cmd: list[str], tmp_path: Path) -> None:
    out = tradeloop(*cmd, "--help", data_dir=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "Usage" in out.stdout


def test_demo_prints_metrics_per_strategy_and_series(tmp_path: Path) -> None:
    out = tradeloop("demo", data_dir=tmp_path)
    assert out.returncode == 0, out.stderr
    for name in ("sma_cross", "momentum", "mean_reversion", "breakout"):
        assert out.stdout.count(name) == 5, name
    assert "coinbase:ETH-USD:4h" in out.stdout and "bitstamp:BTC-USD:1m" in out.stdout
    assert "sharpe" in out.stdout
    # a day of 1m candles is too short to annualise: no 4-digit Sharpe, a caveat naming the series instead
    short = [line for line in out.stdout.splitlines() if "bitstamp:BTC-USD:1m" in line and "│" in line]
    assert len(short) == 4 and all("n/a*" in line for line in short)
    assert "bitstamp:BTC-USD:1m (1 day)" in out.stdout and "cover less than 30 days" in out.stdout
    assert not any("n/a*" in line for line in out.stdout.splitlines() if "coinbase:BTC-USD:4h" in line)
    status = tradeloop("data", "status", "--show-gaps", "2", data_dir=tmp_path)
    assert status.returncode == 0 and "coinbase:ETH-USD:4h" in status.stdout and "missing" in status.stdout
    narrow = tradeloop("data", "status", data_dir=tmp_path, env={"COLUMNS": "64"})
    assert narrow.returncode == 0 and "coinbase:ETH-USD:4h" in narrow.stdout and "--wide shows them" in narrow.stdout
    assert (
        max(len(line) for line in narrow.stdout.splitlines()) <= 64
        and "coverage" not in narrow.stdout.split("not shown")[0]
    )
    wide = tradeloop("data", "status", "--wide", data_dir=tmp_path, env={"COLUMNS": "64"})
    assert "coverage" in wide.stdout and "not shown" not in wide.stdout


def test_bad_csv_is_refused_with_file_row_and_rule(tmp_path: Path, btc_1d: pl.DataFrame) -> None:
    path = tmp_path / "binance__BTC-USDT__1d.csv"
    btc_1d.with_columns(
        pl.when(pl.int_range(pl.len()) == 7).then(pl.col("low") * 10).otherwise(pl.col("low")).alias("low")
    ).write_csv(path)
    out = tradeloop("data", "import", str(path), data_dir=tmp_path / "d")
    assert out.returncode == 3
    assert "binance__BTC-USDT__1d.csv" in out.stderr and "row 7" in out.stderr and "high_lt_low" in out.stderr
    assert not (tmp_path / "d" / "lake").exists() or not any((tmp_path / "d" / "lake").rglob("*.parquet"))
    out = tradeloop("data", "import", str(path), "--quarantine", data_dir=tmp_path / "d")
    assert out.returncode == 0 and "quarantined" in out.stdout
    assert list((tmp_path / "d" / "quarantine").rglob("*.parquet"))


def test_ingest_through_the_cli(tmp_path: Path, btc_1d: pl.DataFrame) -> None:
    with BinanceLoopback({("BTCUSDT", "1d"): btc_1d}) as server:
        env = {"TRADELOOP_EXCHANGE_API_URL": server.url}
        out = tradeloop(
            "data",
            "ingest",
            "--exchange",
            "binance",
            "--symbols",
            "BTC/USDT",
            "--timeframe",
            "1d",
            "--since",
            "2020-01-01",
            data_dir=tmp_path,
            env=env,
        )
        assert out.returncode == 0, out.stderr
        assert "binance:BTC-USDT:1d" in out.stdout and "366" in out.stdout
        unknown = tradeloop(
            "data", "ingest", "--symbols", "NOPE/USDT", "--since", "2020-01-01", data_dir=tmp_path, env=env
        )
        assert unknown.returncode == 4 and "NOPE/USDT" in unknown.stderr
    bad_time = tradeloop("data", "ingest", "--symbols", "BTC/USDT", "--since", "yesterday", data_dir=tmp_path)
    assert bad_time.returncode == 2 and "--since" in bad_time.stderr and "ISO date" in bad_time.stderr


def test_backtest_command(tmp_path: Path) -> None:
    assert tradeloop("data", "import", data_dir=tmp_path).returncode == 0
    out = tradeloop(
        "backtest",
        "sma_cross",
        "--series",
        "coinbase:BTC-USD:4h",
        "--series",
        "coinbase:ETH-USD:4h",
        "--shared-cash",
        "--fraction",
        "0.5",
        "--param",
        "fast=5",
        "--stop-loss",
        "0.05",
        data_dir=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    assert "sma_cross(5,30)" in out.stdout
    missing = tradeloop("backtest", "sma_cross", "--series", "kraken:BTC-USD:1h", data_dir=tmp_path)
    assert missing.returncode == 3 and "tradeloop data import" in missing.stderr
    bad = tradeloop("backtest", "nope", "--series", "coinbase:BTC-USD:4h", data_dir=tmp_path)
    assert bad.returncode == 2 and "nope" in bad.stderr


# ---------------------------------------------------------------- hardening: bad input, exit codes, messages
@pytest.fixture(scope="module")
def btc_lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data folder whose lake holds binance:BTC-USDT:1d (the bundled sample file)."""
    data_dir = tmp_path_factory.mktemp("cli-lake")
    sample = Path(__file__).resolve().parents[2] / "data" / "sample" / "binance__BTC-USDT__1d.parquet"
    out = tradeloop("data", "import", str(sample), data_dir=data_dir)
    assert out.returncode == 0, out.stderr
    return data_dir


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--param", "fast=abc"], ["fast='abc'", "valid integer", "bars in the fast moving average"]),
        (["--param", "fats=10"], ["fats='10'", "did you mean 'fast'", "fast, slow"]),
        (["--param", "fast=50"], ["fast=50 must be shorter than slow=30"]),
        (["--param", "fast"], ["--param 'fast' is not name=value", "--param fast=10"]),
        (["--stop-loss", "5"], ["--stop-loss=5.0", "less than 1", "0.05 = 5%"]),
        (["--fraction", "1.5"], ["--fraction=1.5", "less than or equal to 1", "0.5 = half"]),
        (["--fee", "-0.1"], ["--fee=-0.1", "greater than or equal to 0"]),
    ],
)
def test_invalid_backtest_options_exit_2_naming_field_value_and_fix(
    btc_lake: Path, args: list[str], expected: list[str]
) -> None:
    out = tradeloop("backtest", "sma_cross", "--series", "binance:BTC-USDT:1d", *args, data_dir=btc_lake)
    assert out.returncode == 2, out.stdout + out.stderr
    assert "Traceback" not in out.stderr
    assert out.stderr.startswith("error: ")
    for text in expected:
        assert text in out.stderr, (text, out.stderr)


def test_strategy_name_gets_a_did_you_mean(btc_lake: Path) -> None:
    out = tradeloop("backtest", "sma_cros", "--series", "binance:BTC-USDT:1d", data_dir=btc_lake)
    assert out.returncode == 2 and "did you mean 'sma_cross'" in out.stderr


@pytest.mark.parametrize("series", ["binance:BTC-USDT:01d", "Binance:BTC-USDT:1d", "binance:BTC-USDT:1d\n"])
def test_aliases_of_a_series_are_refused(btc_lake: Path, series: str) -> None:
    out = tradeloop("backtest", "sma_cross", "--series", series, data_dir=btc_lake)
    assert out.returncode == 2, out.stderr
    assert "timeframe=" in out.stderr or "exchange=" in out.stderr


def test_a_missing_series_lists_those_stored(btc_lake: Path) -> None:
    out = tradeloop("backtest", "sma_cross", "--series", "binance:ETH-USDT:1d", data_dir=btc_lake)
    assert out.returncode == 3
    assert "no candles stored for binance:ETH-USDT:1d" in out.stderr
    assert "stored series: binance:BTC-USDT:1d" in out.stderr


def test_rejected_import_prints_its_rule_counts(tmp_path: Path, btc_1d: pl.DataFrame) -> None:
    path = tmp_path / "binance__BTC-USDT__1d.csv"
    bad_rows = pl.int_range(pl.len()).is_in([3, 4, 9])
    btc_1d.with_columns(
        pl.when(bad_rows).then(float("inf")).otherwise(pl.col("close")).alias("close"),
        pl.when(pl.int_range(pl.len()) == 12).then(pl.col("ts") + 1).otherwise(pl.col("ts")).alias("ts"),
    ).write_csv(path)
    out = tradeloop("data", "import", str(path), data_dir=tmp_path / "d")
    assert out.returncode == 3
    assert "row 3 breaks rule 'non_finite'" in out.stderr
    assert "4 bad row(s) in all (non_finite: 3 rows, off_grid: 1 row)" in out.stderr
    out = tradeloop("data", "import", str(path), "--quarantine", data_dir=tmp_path / "d")
    assert out.returncode == 0
    assert "4 bad row(s) quarantined" in out.stdout and "(non_finite: 3 rows, off_grid: 1 row)" in out.stdout


def test_a_future_dated_candle_is_refused_at_import(tmp_path: Path, btc_1d: pl.DataFrame) -> None:
    path = tmp_path / "binance__BTC-USDT__1d.parquet"
    year_2100 = 4_102_444_800_000
    pl.concat([btc_1d, btc_1d.tail(1).with_columns(ts=pl.lit(year_2100, dtype=pl.Int64))]).write_parquet(path)
    out = tradeloop("data", "import", str(path), data_dir=tmp_path / "d")
    assert out.returncode == 3
    assert f"row {btc_1d.height} breaks rule 'in_future'" in out.stderr and "in_future: 1 row" in out.stderr
    assert not list((tmp_path / "d").rglob("*.parquet"))


@pytest.mark.parametrize(
    ("args", "text"),
    [
        (["--exchange", "binance", "--symbol", "BTC/USDT", "--timeframe", "01d"], "timeframe='01d'"),
        (["--exchange", "binanse", "--symbol", "BTC/USDT", "--timeframe", "1d"], "did you mean 'binance'"),
        (["--on-conflict", "merge"], "on_conflict='merge' is not one of error, keep, replace"),
    ],
)
def test_invalid_import_options_exit_2(tmp_path: Path, btc_1d: pl.DataFrame, args: list[str], text: str) -> None:
    path = tmp_path / "binance__BTC-USDT__1d.csv"
    btc_1d.write_csv(path)
    out = tradeloop("data", "import", str(path), *args, data_dir=tmp_path / "d")
    assert out.returncode == 2, out.stderr
    assert text in out.stderr and "Traceback" not in out.stderr


def test_data_status_copes_with_anything_stored(tmp_path: Path) -> None:
    """Files an older version (or a crash) left: a truncated file, bad rows, a future candle,
    a folder named like no series. Status reports each and exits 0; readers name the file."""
    assert tradeloop("data", "import", data_dir=tmp_path).returncode == 0
    lake = tmp_path / "lake"
    series = lake / "coinbase" / "BTC-USD" / "4h"
    truncated = series / "2019.parquet"
    truncated.write_bytes(truncated.read_bytes()[:500])
    year = series / "2021.parquet"
    frame = pl.read_parquet(year)
    frame.with_columns(
        pl.when(pl.int_range(pl.len()).is_in([0, 1])).then(float("nan")).otherwise(pl.col("close")).alias("close")
    ).write_parquet(year)
    frame.tail(1).with_columns(ts=pl.lit(4_102_444_800_000, dtype=pl.Int64)).write_parquet(series / "2100.parquet")
    odd = lake / "coinbase" / "BTC-USD" / "4h\n"
    odd.mkdir()
    frame.head(2).write_parquet(odd / "2021.parquet")
    out = tradeloop("data", "status", "--show-gaps", "1", data_dir=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "coinbase:BTC-USD:4h" in out.stdout and "coinbase:ETH-USD:4h" in out.stdout
    text = " ".join(out.stdout.split())
    assert "coinbase:BTC-USD:4h: stored rows break the import rules (non_finite: 2 rows, in_future: 1 row)" in text
    assert "2019.parquet: not a readable Parquet file" in text
    assert "skipped folder" in text and "timeframe='4h\\n'" in text
    back = tradeloop("backtest", "sma_cross", "--series", "coinbase:BTC-USD:4h", data_dir=tmp_path)
    assert back.returncode == 3 and "2019.parquet: not a readable Parquet file" in back.stderr
    truncated.unlink()
    back = tradeloop("backtest", "sma_cross", "--series", "coinbase:BTC-USD:4h", data_dir=tmp_path)
    assert back.returncode == 0, back.stderr
