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
    return subprocess.run([sys.executable, "-m", "tradeloop", *args], capture_output=True, text=True,
                          env=full_env, timeout=300)


@pytest.mark.parametrize("cmd", [[], ["demo"], ["backtest"], ["data"], ["data", "import"], ["data", "ingest"],
                                 ["data", "status"]])
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
    status = tradeloop("data", "status", "--show-gaps", "2", data_dir=tmp_path)
    assert status.returncode == 0 and "coinbase:ETH-USD:4h" in status.stdout and "missing" in status.stdout


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
        out = tradeloop("data", "ingest", "--exchange", "binance", "--symbols", "BTC/USDT", "--timeframe", "1d",
                        "--since", "2020-01-01", data_dir=tmp_path, env=env)
        assert out.returncode == 0, out.stderr
        assert "binance:BTC-USDT:1d" in out.stdout and "366" in out.stdout
        unknown = tradeloop("data", "ingest", "--symbols", "NOPE/USDT", "--since", "2020-01-01",
                            data_dir=tmp_path, env=env)
        assert unknown.returncode == 4 and "NOPE/USDT" in unknown.stderr
    bad_time = tradeloop("data", "ingest", "--symbols", "BTC/USDT", "--since", "yesterday", data_dir=tmp_path)
    assert bad_time.returncode == 2 and "--since" in bad_time.stderr and "ISO date" in bad_time.stderr


def test_backtest_command(tmp_path: Path) -> None:
    assert tradeloop("data", "import", data_dir=tmp_path).returncode == 0
    out = tradeloop("backtest", "sma_cross", "--series", "coinbase:BTC-USD:4h", "--series", "coinbase:ETH-USD:4h",
                    "--shared-cash", "--fraction", "0.5", "--param", "fast=5", "--stop-loss", "0.05",
                    data_dir=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "sma_cross(5,30)" in out.stdout
    missing = tradeloop("backtest", "sma_cross", "--series", "kraken:BTC-USD:1h", data_dir=tmp_path)
    assert missing.returncode == 3 and "tradeloop data import" in missing.stderr
    bad = tradeloop("backtest", "nope", "--series", "coinbase:BTC-USD:4h", data_dir=tmp_path)
    assert bad.returncode == 2 and "nope" in bad.stderr
