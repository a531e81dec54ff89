"""The candle lake: one Parquet file set per exchange/symbol/timeframe.

Layout: ``<root>/<exchange>/<SYMBOL>/<timeframe>/<period>.parquet`` where the period is the
year (timeframes of 1h and longer) or the month (shorter timeframes), so files stay small
as series grow. Every write validates (with the lake's clock for ``in_future``), merges with
what is stored, and replaces each file atomically. Readers open the Parquet they need; there
is no shared database file.

Readers cope with any stored file (see ``tradeloop.data.stored``): bad rows are left out and
reported (``on_invalid``, else a log warning), a damaged file is a :class:`DataError` naming
it, and ``status`` reports both per series instead of failing. Folders that are not a valid
series name are skipped by ``list_series`` and listed by ``invalid_series_dirs``.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import polars as pl

from tradeloop.data.atomic import directory_lock, remove_stale_temps, write_parquet_atomic
from tradeloop.data.schema import CANDLE_COLUMNS, SeriesKey, coerce_candles, earliest, empty_candles, latest
from tradeloop.data.stored import describe_rejected, load_files, read_stored_file
from tradeloop.data.validation import Gap, find_gaps, validate_candles
from tradeloop.errors import CandleConflictError, ConfigError, SeriesNotFoundError, TradeloopError

log = logging.getLogger(__name__)

OnConflict = Literal["error", "keep", "replace"]
OnInvalid = Callable[[SeriesKey, pl.DataFrame], None]  # (series, rejected rows: file, row, ts, rule)
Clock = Callable[[], int]  # epoch milliseconds
_HOUR_MS = 3_600_000
_YEAR, _MONTH = re.compile(r"\d{4}"), re.compile(r"\d{4}-\d{2}")  # a file's stem: the period it holds
_LISTED = 12


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


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
    rule_counts: dict[str, int] = field(default_factory=dict)  # quarantined rows per rule


@dataclass(frozen=True)
class SeriesStatus:
    """Coverage of one stored series."""

    key: SeriesKey
    rows: int
    first_ts: int | None
    last_ts: int | None
    gaps: list[Gap]
    invalid: dict[str, int] = field(default_factory=dict)  # rows left out, per rule
    unreadable: list[tuple[Path, str]] = field(default_factory=list)  # damaged files, why

    @property
    def missing(self) -> int:
        return sum(g.missing for g in self.gaps)

    @property
    def coverage(self) -> float:
        expected = self.rows + self.missing
        return self.rows / expected if expected else 0.0


class CandleLake:
    """Read and write validated candles under ``root``.

    ``clock`` (epoch ms; default the wall clock) is the writer's "now" for the ``in_future``
    rule and for ``status``/``last_ts``; plain reads never call it.
    """

    def __init__(
        self, root: Path | str, *, quarantine_root: Path | str | None = None, clock: Clock | None = None
    ) -> None:
        self.root = Path(root)
        self.quarantine_root = Path(quarantine_root) if quarantine_root else self.root.parent / "quarantine"
        self.clock: Clock = clock or wall_clock_ms

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

    def _files_or_raise(self, key: SeriesKey) -> list[Path]:
        files = self.files(key)
        if not files:
            stored = [k.label for k in self.list_series()]
            if not stored:
                raise SeriesNotFoundError(f"no candles stored for {key.label}: {self.where_empty()}")
            listing = ", ".join(stored[:_LISTED]) + (
                f" and {len(stored) - _LISTED} more" if len(stored) > _LISTED else ""
            )
            raise SeriesNotFoundError(
                f"no candles stored for {key.label} under {self.root} (stored series: {listing}); check the "
                "series name, or run `tradeloop data import` or `tradeloop data ingest` first"
            )
        return files

    def where_empty(self) -> str:
        """Why a lake that holds no series may be the wrong folder rather than missing data:
        the folder it looked in, absolute, whether it exists, the working directory a relative
        root was taken from, and the setting that points elsewhere."""
        where = self.root.resolve()
        state = "is empty" if self.root.is_dir() else "does not exist"
        relative = "" if self.root.is_absolute() else f" ({self.root} taken from the working directory {Path.cwd()})"
        return (
            f"the lake folder {where}{relative} {state}; if your candles are elsewhere, set TRADELOOP_DATA_DIR "
            "to the data folder that holds lake/ (or start from the folder that holds data/); if none were "
            "stored yet, run `tradeloop data import` or `tradeloop data ingest`"
        )

    def scan(self, key: SeriesKey) -> pl.LazyFrame:
        """The series' good candles as a LazyFrame (read and checked now; see ``read``)."""
        return self.read(key).lazy()

    def read(
        self,
        key: SeriesKey,
        *,
        start: int | None = None,
        end: int | None = None,
        on_invalid: OnInvalid | None = None,
    ) -> pl.DataFrame:
        """Candles of one series, sorted by ``ts``; ``start``/``end`` are inclusive ms bounds.

        Stored rows that break a validation rule are left out and passed to ``on_invalid``
        (default: a log warning); a damaged file raises :class:`DataError` naming it.
        """
        loaded = load_files(self._period_files(key, start, end), timeframe_ms=key.timeframe_ms)
        if loaded.rejected.height:
            (on_invalid or _warn_invalid)(key, loaded.rejected)
        frame = loaded.good
        if start is not None:
            frame = frame.filter(pl.col("ts") >= start)
        if end is not None:
            frame = frame.filter(pl.col("ts") <= end)
        return frame

    def _period_files(self, key: SeriesKey, start: int | None, end: int | None) -> list[Path]:
        """The series' files that may hold candles in ``start``..``end``: each file holds one
        period (a year, or a month below 1h bars) named in its stem, so a bounded read skips the
        others and costs the same whatever the series' length (a stem that is no period is read)."""
        files = self._files_or_raise(key)
        if start is None and end is None:
            return files
        fmt = "%Y" if key.timeframe_ms >= _HOUR_MS else "%Y-%m"

        def period(ms: int) -> str:
            return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime(fmt)

        lo = period(start) if start is not None else ""
        hi = period(end) if end is not None else "\uffff"
        pattern = _YEAR if fmt == "%Y" else _MONTH
        return [f for f in files if not pattern.fullmatch(f.stem) or lo <= f.stem <= hi]

    def read_many(self, keys: list[SeriesKey], *, on_invalid: OnInvalid | None = None) -> pl.DataFrame:
        """Long frame of several series with ``exchange``, ``symbol`` and ``timeframe`` columns."""
        frames = [
            self.read(k, on_invalid=on_invalid).with_columns(
                exchange=pl.lit(k.exchange), symbol=pl.lit(k.symbol), timeframe=pl.lit(k.timeframe)
            )
            for k in keys
        ]
        return pl.concat(frames) if frames else empty_candles()

    def last_ts(self, key: SeriesKey) -> int | None:
        """Open time of the last good stored candle (where an incremental download resumes);
        rows dated after the lake's clock do not count."""
        now = self.clock()
        for path in reversed(self.files(key)):
            good = load_files([path], timeframe_ms=key.timeframe_ms, now_ms=now).good
            if good.height:
                return latest(good["ts"])
        return None

    def list_series(self) -> list[SeriesKey]:
        """Every valid series folder holding Parquet files (others: ``invalid_series_dirs``)."""
        return [key for key, _ in self._series_dirs() if key is not None]

    def invalid_series_dirs(self) -> list[tuple[Path, str]]:
        """Folders with Parquet files whose names are not a valid series, and why."""
        return [(path, why) for key, (path, why) in self._series_dirs() if key is None]

    def _series_dirs(self) -> list[tuple[SeriesKey | None, tuple[Path, str]]]:
        found: list[tuple[SeriesKey | None, tuple[Path, str]]] = []
        if self.root.is_dir():
            for tf_dir in sorted(self.root.glob("*/*/*")):
                if tf_dir.is_dir() and any(tf_dir.glob("*.parquet")):
                    exchange, symbol, timeframe = tf_dir.relative_to(self.root).parts
                    try:
                        key = SeriesKey(exchange, symbol, timeframe)
                    except TradeloopError as exc:
                        found.append((None, (tf_dir, str(exc))))
                        continue
                    if key.symbol != symbol:  # a lower-case or ccxt-style folder name
                        found.append((None, (tf_dir, f"folder {symbol!r} is not the lake name {key.symbol!r}")))
                        continue
                    found.append((key, (tf_dir, "")))
        return found

    def status(self, key: SeriesKey) -> SeriesStatus:
        """Coverage of one series; bad rows and damaged files are counted, never raised."""
        loaded = load_files(self._files_or_raise(key), timeframe_ms=key.timeframe_ms, now_ms=self.clock(), strict=False)
        return series_status(key, loaded.good["ts"], invalid=loaded.rule_counts, unreadable=loaded.unreadable)

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
        report = validate_candles(frame, timeframe_ms=key.timeframe_ms, source=source, now_ms=self.clock())
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
            rule_counts=report.rule_counts,
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
            stored = read_stored_file(target) if target.exists() else empty_candles()
            merged, counts = _merge(stored, part.drop("_period"), key=key, target=target, on_conflict=on_conflict)
            changed = counts["added"] or counts["replaced"]
            plans.append((target, merged if changed else None, counts))
        return plans

    def _quarantine(self, key: SeriesKey, rejected: pl.DataFrame) -> Path:
        target = (
            self.quarantine_root
            / key.exchange
            / key.symbol
            / key.timeframe
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
        pl.any_horizontal(
            [(pl.col(c) - pl.col(f"{c}_old")).abs() > 1e-12 * pl.col(f"{c}_old").abs() for c in value_cols]
        )
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


def series_status(
    key: SeriesKey,
    ts: pl.Series,
    *,
    invalid: dict[str, int] | None = None,
    unreadable: list[tuple[Path, str]] | None = None,
) -> SeriesStatus:
    """Coverage and gaps of a series from its candle times (any order)."""
    ts = ts.sort()
    return SeriesStatus(
        key=key,
        rows=ts.len(),
        first_ts=earliest(ts) if ts.len() else None,
        last_ts=latest(ts) if ts.len() else None,
        gaps=find_gaps(ts, key.timeframe_ms),
        invalid=dict(invalid or {}),
        unreadable=list(unreadable or []),
    )


def _warn_invalid(key: SeriesKey, rejected: pl.DataFrame) -> None:
    log.warning(
        "%s: %d stored row(s) break a validation rule and were left out: %s",
        key.label,
        rejected.height,
        describe_rejected(rejected),
    )
