"""Reading what the lake holds, whatever an older version (or a crash, or a person) left there.

Rules:

- A file that is not readable Parquet (truncated, empty, another format) or lacks a candle
  column is a :class:`DataError` naming the file and the fix; readers that report on the
  whole lake (``status``) record it per file and go on to the next one.
- Readable files are cast to the candle schema (text becomes null; a datetime ``ts`` becomes
  epoch ms) and checked with the import rules (``validation.check_stored``). Bad rows are
  left out of what readers return and reported as ``file``, ``row`` (0-based, in that file),
  ``ts`` and ``rule``; they are never deleted from the file by a reader.
- Plain reads never consult a clock, so the same files always read the same; the
  ``in_future`` rule applies only where the caller passes ``now_ms`` (status, resume point).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from tradeloop.data.schema import CANDLE_COLUMNS, coerce_candles, empty_candles
from tradeloop.data.validation import check_stored
from tradeloop.errors import CandleValidationError, DataError

REJECTED_COLUMNS: tuple[str, ...] = ("file", "row", "ts", "rule")


def read_stored_file(path: Path) -> pl.DataFrame:
    """One stored file cast to the candle schema, or a :class:`DataError` saying what is wrong."""
    try:
        frame = pl.read_parquet(path)
    except Exception as exc:  # noqa: BLE001 - polars/arrow raise several types for damaged files
        raise DataError(
            f"{path}: not a readable Parquet file ({type(exc).__name__}: {str(exc)[:200]}); it is "
            "damaged (e.g. truncated by a crash or a full disk): move it out of the lake, then "
            "re-import or re-ingest that period"
        ) from None
    try:
        return coerce_candles(frame, source=str(path))
    except CandleValidationError as exc:
        raise DataError(f"{exc}; move the file out of the lake and re-import that period") from None


@dataclass(frozen=True, kw_only=True, slots=True)
class StoredCandles:
    """A series as read: good candles (sorted, unique ``ts``), rejected rows, unreadable files."""

    good: pl.DataFrame
    rejected: pl.DataFrame  # REJECTED_COLUMNS
    unreadable: list[tuple[Path, str]] = field(default_factory=list)

    @property
    def rule_counts(self) -> dict[str, int]:
        return dict(self.rejected.group_by("rule", maintain_order=True).len().iter_rows())


def load_files(
    files: list[Path], *, timeframe_ms: int, now_ms: int | None = None, strict: bool = True
) -> StoredCandles:
    """Read and check ``files`` of one series.

    ``strict``: an unreadable file raises; otherwise it is listed in ``unreadable`` and the
    other files are still read.
    """
    frames: list[pl.DataFrame] = []
    unreadable: list[tuple[Path, str]] = []
    for path in files:
        try:
            frame = read_stored_file(path)
        except DataError as exc:
            if strict:
                raise
            unreadable.append((path, str(exc)))
            continue
        frames.append(frame.with_columns(file=pl.lit(path.name), row=pl.int_range(pl.len(), dtype=pl.Int64)))
    if not frames:
        return StoredCandles(good=empty_candles(), rejected=_no_rejects(), unreadable=unreadable)
    good, rejected = check_stored(pl.concat(frames), timeframe_ms=timeframe_ms, now_ms=now_ms)
    rejected = rejected.select(REJECTED_COLUMNS).sort("file", "row")
    return StoredCandles(good=good.select(CANDLE_COLUMNS), rejected=rejected, unreadable=unreadable)


def _no_rejects() -> pl.DataFrame:
    return pl.DataFrame(schema={"file": pl.String, "row": pl.Int64, "ts": pl.Int64, "rule": pl.String})


def describe_rejected(rejected: pl.DataFrame, *, limit: int = 3) -> str:
    """``2031.parquet row 0 (in_future), 2024.parquet row 7 (non_finite), ...``."""
    shown = [f"{f} row {r} ({rule})" for f, r, _, rule in rejected.head(limit).iter_rows()]
    more = rejected.height - len(shown)
    return ", ".join(shown) + (f" and {more} more" if more > 0 else "")
