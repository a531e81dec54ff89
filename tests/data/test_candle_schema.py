"""The candle schema is guaranteed, and series identities are bounded: a column of a type
that is not a number, an absurd timeframe, a symbol whose settle part is not a currency are
clear errors (import) or damaged files (stored), never tracebacks or silent casts."""

from __future__ import annotations

import re
from pathlib import Path

import polars as pl
import pytest

from tests.cli.test_cli import tradeloop
from tradeloop.data import CandleLake, SeriesKey
from tradeloop.data.schema import coerce_candles, lake_symbol, timeframe_ms
from tradeloop.errors import CandleValidationError, ConfigError, DataError

H = 3_600_000
BASE = 1_700_000_000_000 // H * H


def frame(n: int = 5) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "ts": [BASE + i * H for i in range(n)],
            "open": [1.0] * n,
            "high": [2.0] * n,
            "low": [0.5] * n,
            "close": [1.5] * n,
            "volume": [10.0] * n,
        }
    )


NOT_NUMBERS = {
    "close struct": ("close", pl.struct("open", "high"), "Struct"),
    "high list": ("high", pl.concat_list("open", "high"), "List(Float64)"),
    "volume bool": ("volume", pl.lit(True), "Boolean"),
    "open binary": ("open", pl.lit(b"\x01"), "Binary"),
    "low object": ("low", pl.col("low").map_elements(lambda v: object(), return_dtype=pl.Object), "Object"),
    "ts duration": ("ts", pl.duration(milliseconds=pl.col("ts")), "Duration"),
    "ts bool": ("ts", pl.lit(False), "Boolean"),
}


@pytest.mark.parametrize(("column", "expr", "dtype"), NOT_NUMBERS.values(), ids=NOT_NUMBERS.keys())
def test_a_column_that_is_not_a_number_is_refused_by_name(column: str, expr: pl.Expr, dtype: str) -> None:
    bad = frame().with_columns(expr.alias(column))
    with pytest.raises(
        CandleValidationError, match=rf"in.parquet: column '{column}' has type {re.escape(dtype)}"
    ) as info:
        coerce_candles(bad, source="in.parquet")
    assert info.value.exit_code == 3
    assert "convert it" in str(info.value)


def test_numbers_in_other_types_still_cast() -> None:
    """What was cast before still is: integer and decimal prices, text (unparseable -> null),
    datetimes of any unit and zone; a Date becomes its midnight in ms."""
    odd = frame().with_columns(
        pl.col("open").cast(pl.Decimal(38, 10)),
        pl.col("volume").cast(pl.Int32),
        pl.col("close").cast(pl.String),
        pl.from_epoch("ts", time_unit="ms").dt.replace_time_zone("UTC").dt.convert_time_zone("Asia/Tokyo"),
    )
    assert coerce_candles(odd, source="x").equals(frame())
    dated = frame(2).with_columns(pl.Series("ts", [BASE, BASE + 86_400_000]).cast(pl.Datetime("ms")).dt.date())
    assert coerce_candles(dated, source="x")["ts"].to_list() == [
        BASE // 86_400_000 * 86_400_000,
        (BASE // 86_400_000 + 1) * 86_400_000,
    ]


def test_a_stored_file_with_a_struct_column_is_damaged_not_a_crash(lake: CandleLake, tmp_path: Path) -> None:
    key = SeriesKey("binance", "BTC-USDT", "1h")
    lake.write(key, frame(), source="ok")
    path = lake.files(key)[0]
    frame().with_columns(pl.struct("open", "high").alias("close")).write_parquet(path)
    st = lake.status(key)
    [(damaged, why)] = st.unreadable
    assert damaged == path and "column 'close' has type Struct" in why and st.rows == 0
    with pytest.raises(DataError, match=rf"{path.name}: column 'close' has type Struct.*move the file out of the lake"):
        lake.read(key)

    out = tradeloop("data", "status", data_dir=tmp_path / "cli")
    assert out.returncode == 0
    lake_dir = tmp_path / "cli" / "lake" / "binance" / "BTC-USDT" / "1h"
    lake_dir.mkdir(parents=True)
    frame().with_columns(pl.struct("open", "high").alias("close")).write_parquet(lake_dir / "2023.parquet")
    out = tradeloop("data", "status", data_dir=tmp_path / "cli")
    assert "Traceback" not in out.stderr, out.stderr
    assert out.returncode == 0 and "2023.parquet" in out.stdout and "column 'close' has type" in out.stdout


@pytest.mark.parametrize("kind", ["struct", "bool"])
def test_import_of_a_non_numeric_column_exits_with_the_data_code(tmp_path: Path, kind: str) -> None:
    column, expr = {"struct": ("close", pl.struct("open", "high")), "bool": ("volume", pl.lit(True))}[kind]
    path = tmp_path / f"{kind}.parquet"
    frame().with_columns(expr.alias(column)).write_parquet(path)
    for extra in ([], ["--quarantine"]):
        out = tradeloop(
            "data",
            "import",
            str(path),
            "--exchange",
            "binance",
            "--symbol",
            "BTC/USDT",
            "--timeframe",
            "1h",
            *extra,
            data_dir=tmp_path,
        )
        assert out.returncode == 3, out.stderr
        assert "Traceback" not in out.stderr and f"column '{column}' has type" in out.stderr
    assert not (tmp_path / "lake" / "binance").exists()


def test_a_timeframe_longer_than_a_year_is_refused() -> None:
    assert timeframe_ms("52w") == 52 * 7 * 86_400_000 and timeframe_ms("365d") == 365 * 86_400_000
    for huge in ("99999999999999999999w", "53w", "366d", "8761h", "525601m", "31536001s"):
        with pytest.raises(ConfigError, match=rf"timeframe={huge!r} is longer than a year; .*at most 365 days"):
            timeframe_ms(huge)
    with pytest.raises(ConfigError, match="longer than a year"):
        SeriesKey.from_filename("binance__BTC-USDT__99999999999999999999w")


def test_a_huge_timeframe_never_creates_a_series(tmp_path: Path) -> None:
    source = tmp_path / "binance__BTC-USDT__99999999999999999999w.parquet"
    frame().write_parquet(source)
    out = tradeloop("data", "import", str(source), data_dir=tmp_path)
    assert out.returncode == 2 and "longer than a year" in out.stderr, out.stderr
    assert not (tmp_path / "lake" / "binance").exists()


@pytest.mark.parametrize(
    "symbol",
    ["BTC-USDT:../x", "BTC/USDT:", "BTC/USDT:usdt/x", "BTC/USDT:USDT:USDT", "BTC/USDT:USDT-240329", "BTC/USDT:US DT"],
)
def test_a_settle_part_that_is_not_a_currency_is_refused(symbol: str) -> None:
    with pytest.raises(ConfigError, match=r"symbol=.* settle currency .* e\.g\. BTC/USDT:USDT"):
        lake_symbol(symbol)
    with pytest.raises(ConfigError):
        SeriesKey("binance", symbol, "1h")


def test_valid_symbols_map_as_before() -> None:
    assert {
        s: lake_symbol(s)
        for s in (
            "BTC/USDT",
            "btc/usdt",
            " BTC-USDT ",
            "BTC/USDT:USDT",
            "ETH/BTC:BTC",
            "btc/usd:btc",
            "BTC-USDT-PERP",
            "1INCH/USDT",
        )
    } == {
        "BTC/USDT": "BTC-USDT",
        "btc/usdt": "BTC-USDT",
        " BTC-USDT ": "BTC-USDT",
        "BTC/USDT:USDT": "BTC-USDT-PERP",
        "ETH/BTC:BTC": "ETH-BTC-PERP",
        "btc/usd:btc": "BTC-USD-PERP",
        "BTC-USDT-PERP": "BTC-USDT-PERP",
        "1INCH/USDT": "1INCH-USDT",
    }
