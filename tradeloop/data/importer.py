"""Import candle files (Parquet or CSV in the lake schema) and the bundled sample."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import polars as pl

from tradeloop.data.lake import CandleLake, OnConflict, WriteResult
from tradeloop.data.schema import SeriesKey
from tradeloop.errors import ConfigError, DataError

SAMPLE_DIR = Path(__file__).resolve().parents[2] / "data" / "sample"


def read_candle_file(path: Path) -> pl.DataFrame:
    """Read a Parquet or CSV file; the caller validates it."""
    if not path.is_file():
        raise DataError(f"file {path} does not exist; give the path of a .parquet or .csv file")
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            return pl.read_parquet(path)
        if suffix == ".csv":
            return pl.read_csv(path, infer_schema_length=10_000)
    except Exception as exc:  # polars raises several error types for unreadable files
        raise DataError(f"{path}: cannot be read as {suffix[1:]} ({exc}); is the file complete?") from exc
    raise ConfigError(f"file {path} has suffix {suffix!r}; tradeloop imports .parquet and .csv")


def import_file(
    lake: CandleLake,
    path: Path,
    *,
    key: SeriesKey | None = None,
    quarantine: bool = False,
    on_conflict: OnConflict = "error",
) -> WriteResult:
    """Import one file; the series comes from ``key`` or the ``exchange__SYMBOL__tf`` file name."""
    key = key or SeriesKey.from_filename(path.stem)
    frame = read_candle_file(path)
    return lake.write(key, frame, source=str(path), quarantine=quarantine, on_conflict=on_conflict)


def sample_files(sample_dir: Path = SAMPLE_DIR) -> list[Path]:
    files = sorted(sample_dir.glob("*.parquet"))
    if not files:
        raise DataError(f"no sample candles in {sample_dir}; the repository's data/sample/ folder is missing")
    return files


def import_sample(lake: CandleLake, *, files: Iterable[Path] | None = None) -> list[WriteResult]:
    """Import the bundled real sample into the lake (idempotent)."""
    return [import_file(lake, path) for path in (files or sample_files())]
