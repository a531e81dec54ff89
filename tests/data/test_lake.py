import polars as pl
import pytest

from tradeloop.data import CandleLake, SeriesKey
from tradeloop.data.importer import import_file, import_sample, sample_files
from tradeloop.errors import CandleConflictError, CandleValidationError, SeriesNotFoundError


def test_round_trip_partitions_by_year(lake: CandleLake, btc_4h: pl.DataFrame) -> None:
    key = SeriesKey("coinbase", "BTC-USD", "4h")
    result = lake.write(key, btc_4h, source="sample")
    assert result.added == btc_4h.height
    assert [p.stem for p in lake.files(key)] == [str(y) for y in range(2016, 2026)]
    assert lake.read(key).equals(btc_4h.sort("ts"))
    assert lake.last_ts(key) == btc_4h["ts"].max()


def test_short_timeframes_partition_by_month(lake: CandleLake) -> None:
    key = SeriesKey("bitstamp", "BTC-USD", "1m")
    import_file(lake, sample_files()[0].parent / "bitstamp__BTC-USD__1m.parquet")
    assert [p.stem for p in lake.files(key)] == ["2020-01"]


def test_rewrite_is_idempotent_and_incremental(lake: CandleLake, btc_1d: pl.DataFrame) -> None:
    key = SeriesKey("binance", "BTC/USDT", "1d")
    lake.write(key, btc_1d[:200])
    before = [p.stat().st_mtime_ns for p in lake.files(key)]
    again = lake.write(key, btc_1d[:200])
    assert (again.added, again.unchanged) == (0, 200)
    assert [p.stat().st_mtime_ns for p in lake.files(key)] == before  # untouched files
    more = lake.write(key, btc_1d[150:])
    assert (more.added, more.unchanged) == (btc_1d.height - 200, 50)
    assert lake.read(key).equals(btc_1d)


def test_conflict_writes_nothing_unless_asked(lake: CandleLake, btc_1d: pl.DataFrame) -> None:
    key = SeriesKey("binance", "BTC/USDT", "1d")
    lake.write(key, btc_1d)
    changed = btc_1d[100:110].with_columns(pl.col("close") * 1.01, pl.col("high") * 1.02)
    fresh = btc_1d[:0]
    with pytest.raises(CandleConflictError, match="10 candle"):
        lake.write(key, pl.concat([changed, fresh]))
    assert lake.read(key).equals(btc_1d)
    kept = lake.write(key, changed, on_conflict="keep")
    assert kept.replaced == 0 and lake.read(key).equals(btc_1d)
    replaced = lake.write(key, changed, on_conflict="replace")
    assert replaced.replaced == 10
    assert lake.read(key)["close"][100:110].to_list() == changed["close"].to_list()


def test_bad_rows_rejected_or_quarantined(lake: CandleLake, btc_1d: pl.DataFrame) -> None:
    key = SeriesKey("binance", "BTC/USDT", "1d")
    bad = btc_1d[:20].with_columns(
        pl.when(pl.int_range(pl.len()).is_in([4, 9])).then(-1.0).otherwise(pl.col("low")).alias("low")
    )
    with pytest.raises(CandleValidationError, match="row 4"):
        lake.write(key, bad, source="bad.parquet")
    assert not lake.exists(key)
    result = lake.write(key, bad, source="bad.parquet", quarantine=True)
    assert result.added == 18 and result.quarantined == 2
    quarantined = pl.read_parquet(result.quarantine_file)
    assert quarantined["row"].to_list() == [4, 9]
    assert set(quarantined["rule"]) == {"non_positive"}
    assert lake.read(key).height == 18


def test_missing_series_error_says_what_to_do(lake: CandleLake) -> None:
    with pytest.raises(SeriesNotFoundError, match="tradeloop data import"):
        lake.read(SeriesKey("binance", "BTC/USDT", "1h"))


def test_sample_import_and_status(lake: CandleLake) -> None:
    results = import_sample(lake)
    assert len(results) == len(sample_files()) >= 5
    keys = lake.list_series()
    assert {k.timeframe for k in keys} >= {"1m", "5m", "1h", "4h", "1d"}
    st = lake.status(SeriesKey("coinbase", "ETH-USD", "4h"))
    # PROVENANCE.md: 9 gaps / 26 missing candles in this file
    assert (len(st.gaps), st.missing) == (9, 26)
    assert 0.99 < st.coverage < 1.0
    assert sum(r.added for r in import_sample(lake)) == 0


def test_csv_import(lake: CandleLake, btc_1d: pl.DataFrame, tmp_path) -> None:
    path = tmp_path / "binance__BTC-USDT__1d.csv"
    btc_1d.write_csv(path)
    result = import_file(lake, path)
    assert result.added == btc_1d.height
    assert lake.read(result.key).equals(btc_1d)


def test_a_bounded_read_opens_only_the_periods_it_spans(lake: CandleLake, btc_4h: pl.DataFrame) -> None:
    """Each file holds one period; a read of one year opens that year's file alone, so a damaged
    file of another year does not stop it (an unbounded read still names the damage), and the
    rows equal the full read's over the same bounds."""
    from tradeloop.errors import DataError

    key = SeriesKey("coinbase", "BTC-USD", "4h")
    lake.write(key, btc_4h, source="sample")
    start, end = 1_609_459_200_000, 1_640_995_199_999  # 2021, UTC
    whole = lake.read(key).filter(pl.col("ts").is_between(start, end))
    (lake.series_dir(key) / "2018.parquet").write_bytes(b"not parquet")  # another year, damaged
    assert lake.read(key, start=start, end=end).equals(whole) and whole.height > 2000
    assert lake.read(key, start=start + 86_400_000 * 200, end=start + 86_400_000 * 201).height == 7  # inclusive
    assert lake.read(key, start=start)["ts"].min() >= start  # from 2021 on: 2018 is never opened
    with pytest.raises(DataError, match="2018.parquet"):
        lake.read(key)
