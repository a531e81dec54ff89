"""DuckDB views over the lake: the same candles and the same status as the lake's own
readers (rule by rule, on files an older version could have left), and nothing but reads."""

from __future__ import annotations

import math
from pathlib import Path

import polars as pl
import pytest

from tradeloop.data import CandleLake, SeriesKey
from tradeloop.data.importer import import_sample
from tradeloop.data.sql import UNION_COLUMNS, LakeSQL, view_name
from tradeloop.data.validation import RULES
from tradeloop.errors import ConfigError, DataError

KEY = SeriesKey("coinbase", "BTC-USD", "4h")
STEP = 4 * 3_600_000
NOW = 1_767_225_600_000  # 2026-01-01: the lake's clock in these tests
FUTURE = 1_924_992_000_000  # 2031-01-01


@pytest.fixture
def sample_lake(tmp_path: Path) -> CandleLake:
    lake = CandleLake(tmp_path / "lake", clock=lambda: NOW)
    import_sample(lake)
    return lake


def _poke(frame: pl.DataFrame, rows: dict[int, dict[str, float | int]]) -> pl.DataFrame:
    for i, values in rows.items():
        frame = frame.with_columns(
            pl.when(pl.int_range(pl.len()) == i).then(pl.lit(v)).otherwise(pl.col(c)).alias(c)
            for c, v in values.items()
        )
    return frame


def break_every_rule(lake: CandleLake) -> list[tuple[str, int]]:
    """Rewrite files of KEY, without validation, so that each import rule is broken; returns
    where the duplicates are (file, row)."""
    series = lake.series_dir(KEY)
    y2021 = pl.read_parquet(series / "2021.parquet")
    t = y2021["ts"]
    _poke(
        y2021,
        {
            1: {"close": None},
            2: {"volume": math.nan},
            3: {"low": -1.0},
            4: {"high": 1e13},
            5: {"volume": -2.0},
            6: {"high": 1.0, "low": 2.0},
            7: {"open": 10.0, "close": 12.0, "high": 11.0, "low": 9.0},
            8: {"open": 10.0, "close": 12.0, "high": 13.0, "low": 11.0},
            9: {"ts": t[9] + 1},
            10: {"ts": t[11]},  # the same candle time twice in one file: the later row is the duplicate
        },
    ).reverse().write_parquet(series / "2021.parquet")  # unsorted: taken in ts order, as check_stored does
    old = y2021.head(3).with_columns(ts=pl.Series([1_000_000_000_000, 1_100_000_000_000, 1_200_000_000_000]))
    pl.concat([old, y2021.tail(1).with_columns(ts=pl.lit(FUTURE, dtype=pl.Int64))]).write_parquet(
        series / "2031.parquet"
    )
    y2022 = pl.read_parquet(series / "2022.parquet")
    # an older writer: datetime ts, text close (one unparseable), integer volume, and a candle of 2021 again
    pl.concat([y2022, y2021.head(1)]).with_columns(
        pl.from_epoch("ts", time_unit="ms").dt.cast_time_unit("us"),
        pl.col("close").cast(pl.String),
        pl.col("volume").round(0).cast(pl.Int64),
    ).with_columns(
        pl.when(pl.int_range(pl.len()) == 4).then(pl.lit("n/a")).otherwise(pl.col("close")).alias("close")
    ).write_parquet(series / "2022.parquet")
    return [("2021.parquet", y2021.height - 1 - 10), ("2022.parquet", y2022.height)]


def test_views_hold_what_the_lake_reads_and_status_matches(sample_lake: CandleLake) -> None:
    duplicates = break_every_rule(sample_lake)
    with LakeSQL(sample_lake, now_ms=NOW) as sql:
        status = sql.status()
        for key in sample_lake.list_series():
            expected = sample_lake.status(key)
            assert status[key] == expected, key.label
        assert sql.query(f"SELECT * FROM {view_name(KEY)}").equals(sample_lake.read(KEY).filter(pl.col("ts") < FUTURE))
        rejected = sql.rejected()
    # the crafted files break every rule that can happen to stored rows (sorting rules out out_of_order)
    assert set(status[KEY].invalid) == set(RULES) - {"out_of_order"}
    assert rejected.filter(pl.col("rule") == "duplicate").select("file", "row").rows() == duplicates
    with LakeSQL(sample_lake, keys=[KEY]) as plain:  # no clock: as plain reads, the future row is kept
        assert plain.query(f"SELECT * FROM {view_name(KEY)}").equals(sample_lake.read(KEY))
        assert list(plain.views) == [view_name(KEY)]


def test_union_view_columns_and_series_views(sample_lake: CandleLake) -> None:
    with LakeSQL(sample_lake) as sql:
        assert tuple(sql.query("DESCRIBE candles")["column_name"]) == UNION_COLUMNS
        counts = sql.query("SELECT exchange, symbol, timeframe, count(*) AS n FROM candles GROUP BY ALL")
        assert {(e, s, t): n for e, s, t, n in counts.iter_rows()} == {
            (k.exchange, k.symbol, k.timeframe): sample_lake.read(k).height for k in sample_lake.list_series()
        }
        assert set(sql.views) == {view_name(k) for k in sample_lake.list_series()}
        assert "binanceus_eth_usd_5m" in sql.views and "coinbase_btc_usd_4h" in sql.views
        one = sql.query("SELECT max(close) AS top FROM coinbase_btc_usd_4h WHERE ts >= ?", params=[1_704_067_200_000])
        assert one["top"].item() == sample_lake.read(KEY, start=1_704_067_200_000)["close"].max()


def test_an_empty_lake_still_has_the_candles_view(tmp_path: Path) -> None:
    with LakeSQL(CandleLake(tmp_path / "none")) as sql:
        frame = sql.query("SELECT * FROM candles")
        assert frame.height == 0 and tuple(frame.columns) == UNION_COLUMNS
        assert sql.status() == {} and sql.views == {}


def test_a_damaged_file_is_named_or_left_out(sample_lake: CandleLake) -> None:
    path = sample_lake.series_dir(KEY) / "2020.parquet"
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(DataError, match=r"2020\.parquet: not a readable Parquet file"):
        LakeSQL(sample_lake).open()
    with LakeSQL(sample_lake, strict=False) as sql:
        assert [(u.key, u.path.name) for u in sql.unreadable] == [(KEY, "2020.parquet")]
        assert sql.status()[KEY] == sample_lake.status(KEY)
        assert sql.query(f"SELECT count(*) AS n FROM {view_name(KEY)}")["n"].item() == sample_lake.status(KEY).rows


@pytest.mark.parametrize(
    "statement",
    [
        "CREATE TABLE x AS SELECT 1",
        "DROP VIEW candles",
        "INSERT INTO candles SELECT * FROM candles",
        "COPY (SELECT * FROM candles) TO 'out.csv'",
        "ATTACH 'other.duckdb'",
        "SET threads = 1",
        "INSTALL httpfs",
        "EXPLAIN ANALYZE SELECT 1",
        "SELECT 1; DROP VIEW candles",
        "WITH x AS (SELECT 1) DELETE FROM candles",
    ],
)
def test_only_one_read_statement_runs(sample_lake: CandleLake, statement: str) -> None:
    with LakeSQL(sample_lake) as sql, pytest.raises(ConfigError, match="one read-only statement") as info:
        sql.query(statement)
    assert info.value.exit_code == 2 and "SELECT" in str(info.value)


def test_files_outside_the_lake_cannot_be_read(sample_lake: CandleLake, tmp_path: Path) -> None:
    outside = tmp_path / "secret.csv"
    outside.write_text("a\n1\n")
    with LakeSQL(sample_lake) as sql, pytest.raises(ConfigError, match="secret.csv"):
        sql.query(f"SELECT * FROM read_csv('{outside}')")


@pytest.mark.parametrize(
    ("statement", "said"),
    [
        ("SELECT * FROM nope", "nope"),
        ("SELECT nope FROM candles", "nope"),
        ("SELEC 1", "SELEC"),
    ],
)
def test_bad_sql_names_the_problem_and_the_views(sample_lake: CandleLake, statement: str, said: str) -> None:
    with LakeSQL(sample_lake) as sql, pytest.raises(ConfigError) as info:
        sql.query(statement)
    text = str(info.value)
    assert said in text and info.value.exit_code == 2
    assert "candles (exchange, symbol, timeframe, ts, open, high, low, close, volume)" in text
    assert "coinbase_btc_usd_4h" in text
