"""The candle lake: one Parquet file set per exchange/symbol/timeframe.

Layout: ``<root>/<exchange>/<SYMBOL>/<timeframe>/<period>.parquet`` where the period is the
year (timeframes of 1h and longer) or the month (shorter timeframes), so files stay small
as series grow. Every write validates, merges with what is stored, and replaces each file
atomically. Readers open the Parquet they need; there is no shared database file.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import polars as pl

from tradeloop.data.atomic import directory_lock, remove_stale_temps, write_parquet_atomic
from tradeloop.data.schema import CANDLE_COLUMNS, SeriesKey, coerce_candles, empty_candles
from tradeloop.data.validation import Gap, find_gaps, validate_candles
from tradeloop.errors import CandleConflictError, ConfigError, SeriesNotFoundError

OnConflict = Literal["error", "keep", "replace"]
_HOUR_MS = 3_600_000


@dataclass(frozen=True)
class WriteResult:
    """What one write did to a series."""

    key: SeriesKey
    received: int
    added: int
    unchanged: int
    replaced: int
    quarantined: int
    quarantine_file: Path | None
    gaps: list[Gap] = field(default_factory=list)  # gaps inside the written candles


@dataclass(frozen=True)
class SeriesStatus:
    """Coverage of one stored series."""

    key: SeriesKey
    rows: int
    first_ts: int | None
    last_ts: int | None
    gaps: list[Gap]

    @property
    def missing(self) -> int:
        return sum(g.missing for g in self.gaps)

    @property
    def coverage(self) -> float:
        expected = self.rows + self.missing
        return self.rows / expected if expected else 0.0


class CandleLake:
    """Read and write validated candles under ``root``."""

    def __init__(self, root: Path | str, *, quarantine_root: Path | str | None = None) -> None:
        self.root = Path(root)
        self.quarantine_root = Path(quarantine_root) if quarantine_root else self.root.parent / "quarantine"

    # -- paths -----------------------------------------------------------------------------
    def series_dir(self, key: SeriesKey) -> Path:
        return self.root / key.exchange / key.symbol / key.timeframe

    def files(self, key: SeriesKey) -> list[Path]:
        directory = self.series_dir(key)
        return sorted(directory.glob("*.parquet")) if directory.is_dir() else []

    @staticmethod
    def _period_expr(key: SeriesKey) -> pl.Expr:
        fmt = "%Y" if key.timeframe_ms >= _HOUR_MS else "%Y-%m"
        return pl.from_epoch("ts", time_unit="ms").dt.strftime(fmt).alias("_period")

    # -- reading ---------------------------------------------------------------------------
    def exists(self, key: SeriesKey) -> bool:
        return bool(self.files(key))

    def scan(self, key: SeriesKey) -> pl.LazyFrame:
        files = self.files(key)
        if not files:
            raise SeriesNotFoundError(
                f"no candles stored for {key.label} under {self.root}; "
                "run `tradeloop data import` or `tradeloop data ingest` first"
            )
        return pl.scan_parquet(files).select(CANDLE_COLUMNS)

    def read(self, key: SeriesKey, *, start: int | None = None, end: int | None = None) -> pl.DataFrame:
        """Candles of one series, sorted by ``ts``; ``start``/``end`` are inclusive ms bounds."""
        lazy = self.scan(key)
        if start is not None:
            lazy = lazy.filter(pl.col("ts") >= start)
        if end is not None:
            lazy = lazy.filter(pl.col("ts") <= end)
        return lazy.sort("ts").collect()

    def read_many(self, keys: list[SeriesKey]) -> pl.DataFrame:
        """Long frame of several series with ``exchange``, ``symbol`` and ``timeframe`` columns."""
        frames = [
            self.read(k).with_columns(
                exchange=pl.lit(k.exchange), symbol=pl.lit(k.symbol), timeframe=pl.lit(k.timeframe)
            )
            for k in keys
        ]
        return pl.concat(frames) if frames else empty_candles()

    def last_ts(self, key: SeriesKey) -> int | None:
        files = self.files(key)
        if not files:
            return None
        return pl.scan_parquet(files[-1]).select(pl.col("ts").max()).collect().item()

    def list_series(self) -> list[SeriesKey]:
        keys = []
        if self.root.is_dir():
            for tf_dir in sorted(self.root.glob("*/*/*")):
                if tf_dir.is_dir() and any(tf_dir.glob("*.parquet")):
                    exchange, symbol, timeframe = tf_dir.relative_to(self.root).parts
                    keys.append(SeriesKey(exchange, symbol, timeframe))
        return keys

    def status(self, key: SeriesKey) -> SeriesStatus:
        return series_status(key, self.scan(key).select("ts").collect()["ts"])

    # -- writing ---------------------------------------------------------------------------
    def write(
        self,
        key: SeriesKey,
        candles: pl.DataFrame,
        *,
        source: str = "<frame>",
        quarantine: bool = False,
        on_conflict: OnConflict = "error",
    ) -> WriteResult:
        """Validate ``candles`` and merge them into the series.

        Bad rows raise :class:`CandleValidationError` (nothing written) unless ``quarantine``,
        which sets them aside under the quarantine folder and writes the rest. A stored candle
        with different values for the same ``ts`` is a conflict: ``error`` (default) writes
        nothing, ``keep`` keeps the stored one, ``replace`` takes the new one.
        """
        if on_conflict not in ("error", "keep", "replace"):
            raise ConfigError(f"on_conflict={on_conflict!r} is not one of error, keep, replace")
        frame = coerce_candles(candles, source=source)
        report = validate_candles(frame, timeframe_ms=key.timeframe_ms, source=source)
        if not quarantine:
            report.raise_if_rejected()
        directory = self.series_dir(key)
        with directory_lock(directory):
            remove_stale_temps(directory)
            plans = self._plan_merge(key, report.good, on_conflict=on_conflict)
            quarantine_file = self._quarantine(key, report.rejected) if report.rejected.height else None
            for target, merged, _ in plans:
                if merged is not None:
                    write_parquet_atomic(merged, target)
        added = sum(p[2]["added"] for p in plans)
        return WriteResult(
            key=key,
            received=frame.height,
            added=added,
            unchanged=sum(p[2]["unchanged"] for p in plans),
            replaced=sum(p[2]["replaced"] for p in plans),
            quarantined=report.rejected.height,
            quarantine_file=quarantine_file,
            gaps=report.gaps,
        )

    def _plan_merge(
        self, key: SeriesKey, good: pl.DataFrame, *, on_conflict: OnConflict
    ) -> list[tuple[Path, pl.DataFrame | None, dict[str, int]]]:
        """Work out every file's new content before touching any file.

        Each plan is ``(file, new content or None when the file stays as it is, counts)``.
        """
        plans: list[tuple[Path, pl.DataFrame | None, dict[str, int]]] = []
        directory = self.series_dir(key)
        tagged = good.with_columns(self._period_expr(key))
        for (period,), part in tagged.group_by("_period", maintain_order=True):
            target = directory / f"{period}.parquet"
            stored = pl.read_parquet(target) if target.exists() else empty_candles()
            merged, counts = _merge(
                stored, part.drop("_period"), key=key, target=target, on_conflict=on_conflict
            )
            changed = counts["added"] or counts["replaced"]
            plans.append((target, merged if changed else None, counts))
        return plans

    def _quarantine(self, key: SeriesKey, rejected: pl.DataFrame) -> Path:
        target = (
            self.quarantine_root / key.exchange / key.symbol / key.timeframe
            / f"{time.strftime('%Y%m%dT%H%M%S')}-{time.time_ns() % 1_000_000:06d}.parquet"
        )
        write_parquet_atomic(rejected, target)
        return target


def _merge(
    stored: pl.DataFrame, new: pl.DataFrame, *, key: SeriesKey, target: Path, on_conflict: OnConflict
) -> tuple[pl.DataFrame, dict[str, int]]:
    joined = new.join(stored, on="ts", how="left", suffix="_old")
    overlap = joined.filter(pl.col("open_old").is_not_null())
    value_cols = [c for c in CANDLE_COLUMNS if c != "ts"]
    differs = overlap.filter(
        pl.any_horizontal([(pl.col(c) - pl.col(f"{c}_old")).abs() > 1e-12 * pl.col(f"{c}_old").abs() for c in value_cols])
    )
    if differs.height and on_conflict == "error":
        first = differs.row(0, named=True)
        raise CandleConflictError(
            f"{key.label}: {differs.height} candle(s) differ from those stored in {target.name}, "
            f"first at ts={first['ts']} (stored close={first['close_old']}, new close={first['close']}). "
            "Nothing was written. Pass on_conflict='replace' (CLI: --on-conflict replace) to take "
            "the new values, or 'keep' to keep the stored ones."
        )
    fresh = joined.filter(pl.col("open_old").is_null()).select(CANDLE_COLUMNS)
    counts = {"added": fresh.height, "unchanged": overlap.height - differs.height, "replaced": 0}
    if on_conflict == "replace" and differs.height:
        counts["replaced"] = differs.height
        replaced = differs.select(CANDLE_COLUMNS)
        stored = stored.join(replaced.select("ts"), on="ts", how="anti")
        fresh = pl.concat([fresh, replaced])
    merged = pl.concat([stored, fresh]).sort("ts")
    return merged, counts


def series_status(key: SeriesKey, ts: pl.Series) -> SeriesStatus:
    """Coverage and gaps of a series from its candle times (any order)."""
    ts = ts.sort()
    return SeriesStatus(
        key=key,
        rows=ts.len(),
        first_ts=ts.min() if ts.len() else None,
        last_ts=ts.max() if ts.len() else None,
        gaps=find_gaps(ts, key.timeframe_ms),
    )
