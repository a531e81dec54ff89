"""Readers survive whatever an older version (or a crash) left in the lake.

The bad files here are written straight with polars, bypassing validation, as an older
tradeloop would have stored them.
"""

from __future__ import annotations

import math
from pathlib import Path

import polars as pl
import pytest

from tradeloop.data import CandleLake, SeriesKey
from tradeloop.errors import DataError, SeriesNotFoundError

KEY = SeriesKey("coinbase", "BTC-USD", "4h")
STEP = 4 * 3_600_000
NOW = 1_767_225_600_000  # 2026-01-01: the lake's clock in these tests
FUTURE = 1_924_992_000_000  # 2031-01-01


def clocked(lake: CandleLake) -> CandleLake:
    """The same lake with its clock fixed at ``NOW`` (2026-01-01)."""
    return CandleLake(lake.root, quarantine_root=lake.quarantine_root, clock=lambda: NOW)


@pytest.fixture
def stored(lake: CandleLake, btc_4h: pl.DataFrame) -> pl.DataFrame:
    """The sample series (2016..2025, a file per year) written through the lake, as stored."""
    lake.write(KEY, btc_4h, source="sample")
    return lake.read(KEY)


def year_file(lake: CandleLake, year: int) -> Path:
    return lake.series_dir(KEY) / f"{year}.parquet"


def poke(lake: CandleLake, year: int, rows: dict[int, dict[str, float]]) -> pl.DataFrame:
    """Overwrite values of rows (by position) in one year file, without validation."""
    path = year_file(lake, year)
    frame = pl.read_parquet(path)
    for i, values in rows.items():
        frame = frame.with_columns(
            pl.when(pl.int_range(pl.len()) == i).then(pl.lit(v)).otherwise(pl.col(c)).alias(c)
            for c, v in values.items()
        )
    frame.write_parquet(path)
    return frame


def test_bad_rows_of_an_old_file_are_left_out_and_reported(lake: CandleLake, stored: pl.DataFrame) -> None:
    first = pl.read_parquet(year_file(lake, 2021))["ts"][7]
    poke(lake, 2021, {3: {"close": math.inf}, 5: {"high": math.nan}, 7: {"ts": first + 1}})
    seen: list[pl.DataFrame] = []
    frame = lake.read(KEY, on_invalid=lambda key, rows: seen.append(rows))
    assert frame.height == stored.height - 3
    assert frame["close"].is_finite().all() and frame["high"].is_finite().all()
    assert len(seen) == 1
    assert seen[0].select("file", "row", "rule").rows() == [
        ("2021.parquet", 3, "non_finite"),
        ("2021.parquet", 5, "non_finite"),
        ("2021.parquet", 7, "off_grid"),
    ]
    many = lake.read_many([KEY])
    assert many.height == stored.height - 3 and set(many["symbol"]) == {"BTC-USD"}
    st = lake.status(KEY)
    assert st.invalid == {"non_finite": 2, "off_grid": 1}
    before = CandleLake(lake.root.parent / "other")
    before.write(KEY, stored, source="sample")
    expected = before.status(KEY)
    assert st.rows == stored.height - 3 and st.missing == expected.missing + 3


def test_a_future_row_from_an_old_version(lake: CandleLake, stored: pl.DataFrame) -> None:
    lake = clocked(lake)
    before = lake.status(KEY)
    last = stored.tail(1).with_columns(ts=pl.lit(FUTURE, dtype=pl.Int64))
    last.write_parquet(year_file(lake, 2031))
    assert lake.read(KEY)["ts"].max() == FUTURE  # plain reads use no clock: the same files read the same
    st = lake.status(KEY)  # status (the lake's clock) leaves it out of coverage and says so
    assert st.invalid == {"in_future": 1} and before.invalid == {}
    assert (st.rows, st.last_ts, st.gaps) == (before.rows, stored["ts"].max(), before.gaps)
    assert lake.last_ts(KEY) == stored["ts"].max()  # an incremental download resumes after real data


def test_a_truncated_file_is_named_by_readers_and_counted_by_status(lake: CandleLake, stored: pl.DataFrame) -> None:
    path = year_file(lake, 2020)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"2020\.parquet: not a readable Parquet file.*re-import") as info:
        lake.read(KEY)
    assert info.value.exit_code == 3
    with pytest.raises(DataError, match=r"2020\.parquet"):
        lake.read_many([KEY])
    st = lake.status(KEY)
    assert [p.name for p, _ in st.unreadable] == ["2020.parquet"]
    in_2020 = pl.col("ts").is_between(1_577_836_800_000, 1_609_459_200_000, closed="left")
    assert st.rows == stored.filter(~in_2020).height > 0
    assert lake.last_ts(KEY) == stored["ts"].max()
    with pytest.raises(DataError, match=r"2020\.parquet"):  # a write that would merge into it says which file
        lake.write(KEY, stored.filter(pl.col("ts") < 1_609_459_200_000).tail(1))


def test_an_empty_file_and_one_that_is_not_parquet(lake: CandleLake, stored: pl.DataFrame) -> None:
    year_file(lake, 2018).write_bytes(b"")
    year_file(lake, 2019).write_text("ts,open,high,low,close,volume\n")
    st = lake.status(KEY)
    assert sorted(p.name for p, _ in st.unreadable) == ["2018.parquet", "2019.parquet"]
    with pytest.raises(DataError, match=r"2018\.parquet"):
        lake.read(KEY)


def test_old_schemas_are_cast_or_named(lake: CandleLake, stored: pl.DataFrame) -> None:
    year = stored.filter(pl.col("ts") >= 1_609_459_200_000, pl.col("ts") < 1_640_995_200_000)
    # an older writer: datetime ts, text prices (one unparseable), integer volume
    year.with_columns(
        pl.from_epoch("ts", time_unit="ms").dt.cast_time_unit("us"),
        pl.col("close").cast(pl.String),
        pl.col("volume").cast(pl.Int64),
    ).with_columns(
        pl.when(pl.int_range(pl.len()) == 2).then(pl.lit("n/a")).otherwise(pl.col("close")).alias("close")
    ).write_parquet(year_file(lake, 2021))
    seen: list[pl.DataFrame] = []
    frame = lake.read(KEY, on_invalid=lambda key, rows: seen.append(rows))
    assert frame.height == stored.height - 1 and frame.schema == stored.schema
    assert seen[0].select("file", "row", "rule").rows() == [("2021.parquet", 2, "missing")]
    assert frame.filter(pl.col("ts") == year["ts"][0]).row(0) == year.row(0)[:5] + (float(int(year["volume"][0])),)
    assert frame.filter(pl.col("ts") == year["ts"][0])["ts"].item() == year["ts"][0]  # us datetime -> ms
    year.drop("volume").write_parquet(year_file(lake, 2021))
    with pytest.raises(DataError, match=r"2021\.parquet: missing column\(s\) \['volume'\]"):
        lake.read(KEY)
    assert [p.name for p, _ in lake.status(KEY).unreadable] == ["2021.parquet"]


def test_unsorted_and_duplicated_rows_lose_nothing_good(lake: CandleLake, stored: pl.DataFrame) -> None:
    path = year_file(lake, 2022)
    frame = pl.read_parquet(path)
    pl.concat([frame.reverse(), frame.head(2)]).write_parquet(path)
    seen: list[pl.DataFrame] = []
    assert lake.read(KEY, on_invalid=lambda key, rows: seen.append(rows)).equals(stored)
    assert seen[0]["rule"].to_list() == ["duplicate", "duplicate"]


def test_odd_folders_are_skipped_and_listed(lake: CandleLake, stored: pl.DataFrame) -> None:
    for name in ("1h\n", "01d", "\u0661d"):
        odd = lake.root / "coinbase" / "BTC-USD" / name
        odd.mkdir(parents=True)
        stored.head(3).write_parquet(odd / "2020.parquet")
    for parts in (("Coinbase", "BTC-USD", "4h"), ("coinbase", "btc-usd", "4h")):
        odd = lake.root.joinpath(*parts)
        odd.mkdir(parents=True)
        stored.head(3).write_parquet(odd / "2020.parquet")
    assert lake.list_series() == [KEY]
    skipped = lake.invalid_series_dirs()
    assert sorted(str(p.relative_to(lake.root)) for p, _ in skipped) == sorted(
        [
            "coinbase/BTC-USD/1h\n",
            "coinbase/BTC-USD/01d",
            "coinbase/BTC-USD/\u0661d",
            "Coinbase/BTC-USD/4h",
            "coinbase/btc-usd/4h",
        ]
    )
    assert all(why for _, why in skipped)


def test_a_missing_series_lists_the_stored_ones(lake: CandleLake, stored: pl.DataFrame) -> None:
    with pytest.raises(
        SeriesNotFoundError,
        match=r"no candles stored for coinbase:ETH-USD:4h .*"
        r"stored series: coinbase:BTC-USD:4h\)",
    ):
        lake.read(SeriesKey("coinbase", "ETH-USD", "4h"))


def test_import_refuses_a_future_candle_by_the_lakes_clock(lake: CandleLake, stored: pl.DataFrame) -> None:
    from tradeloop.errors import CandleValidationError

    lake = clocked(lake)
    nxt = stored.tail(1).with_columns(ts=pl.lit(NOW + 2 * STEP, dtype=pl.Int64))
    with pytest.raises(CandleValidationError, match="in_future: 1 row"):
        lake.write(KEY, nxt, source="new.csv")
    assert lake.read(KEY).equals(stored)
    today = stored.tail(1).with_columns(ts=pl.lit(NOW, dtype=pl.Int64))  # the bar still forming: allowed
    assert lake.write(KEY, today).added == 1
