"""`tradeloop data query`: read-only SQL over the lake, as a user runs it (real processes)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from tradeloop.data import CandleLake
from tradeloop.data.importer import import_sample, sample_files


def tradeloop(*args: str, data_dir: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "TRADELOOP_DATA_DIR": str(data_dir), "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "tradeloop", "data", "query", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("query")
    import_sample(CandleLake(root / "lake"))
    return root


def sample(name: str) -> pl.DataFrame:
    [path] = [p for p in sample_files() if p.stem == name]
    return pl.read_parquet(path)


def test_table_csv_and_json_output(data_dir: Path) -> None:
    eth = sample("coinbase__ETH-USD__4h")
    out = tradeloop(
        "SELECT symbol, count(*) AS n, max(high) AS top FROM candles WHERE exchange = 'coinbase' "
        "AND timeframe = '4h' GROUP BY symbol ORDER BY symbol",
        data_dir=data_dir,
    )
    assert out.returncode == 0, out.stderr
    assert "2 rows" in out.stdout
    eth_line = next(line for line in out.stdout.splitlines() if "ETH-USD" in line)
    assert str(eth.height) in eth_line and repr(eth["high"].max()) in eth_line

    out = tradeloop(
        "SELECT * FROM coinbase_eth_usd_4h ORDER BY ts", "--format", "csv", "--limit", "5", data_dir=data_dir
    )
    assert out.returncode == 0, out.stderr
    assert pl.read_csv(io.StringIO(out.stdout)).equals(eth.sort("ts").head(5))
    assert "first 5 rows" in out.stderr

    out = tradeloop(
        "SELECT ts, close FROM coinbase_eth_usd_4h ORDER BY ts DESC",
        "--format",
        "json",
        "--limit",
        "0",
        data_dir=data_dir,
    )
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert len(rows) == eth.height and rows[0] == {"ts": eth["ts"].max(), "close": eth.sort("ts")["close"][-1]}
    assert out.stderr == ""


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (
            ["SELECT close FROM coinbase_eth_usd_1d"],
            'coinbase_eth_usd_1d does not exist! Did you mean "coinbase_eth_usd_4h"',
        ),
        (["SELECT closing FROM candles"], 'column "closing" not found'),
        (["SELECT FROM WHERE"], "does not parse"),
    ],
)
def test_bad_sql_exits_2_naming_the_problem_and_the_views(data_dir: Path, args: list[str], said: str) -> None:
    out = tradeloop(*args, data_dir=data_dir)
    assert out.returncode == 2, out.stdout
    text = " ".join(out.stderr.split())
    assert said in text and "Traceback" not in out.stderr
    assert "coinbase_btc_usd_4h" in text and "candles (exchange, symbol, timeframe, ts" in text


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (
            ["DELETE FROM candles"],
            "DELETE statement, which is refused; `tradeloop data query` and LakeSQL run one "
            "read-only statement: SELECT",
        ),
        (["SELECT 1", "--format", "xml"], "--format='xml' is not one of table, csv, json"),
        (["SELECT 1", "--limit", "-1"], "--limit=-1 is negative"),
    ],
)
def test_writes_and_bad_options_exit_2(data_dir: Path, args: list[str], said: str) -> None:
    out = tradeloop(*args, data_dir=data_dir)
    assert out.returncode == 2, out.stdout
    assert said in " ".join(out.stderr.split()) and "Traceback" not in out.stderr
