"""Candle validation on the way into the lake (and on the way out), and gap detection.

Rules (each row gets the first rule it breaks, in this order):

=================  =======================================================================
rule               meaning
=================  =======================================================================
missing            a value is missing (null), or ``ts`` is not an integer
non_finite         a price or the volume is NaN, +inf or -inf
non_positive       open/high/low/close <= 0
absurd_magnitude   a price above 1e12 or below 1e-12, or a volume above 1e18: no market has
                   quoted these (the bundled real files span prices 2.2e-5 .. 1.3e5 and
                   volumes up to 2.2e11); they are unit or parsing errors
negative_volume    volume < 0
high_lt_low        high < low
high_below_body    high < max(open, close)
low_above_body     low > min(open, close)
before_2009        ts is before 2009-01-01 00:00 UTC (no crypto market existed): seconds
                   or microseconds taken for milliseconds land here or in ``in_future``
in_future          ts is later than now + one bar + ``CLOCK_TOLERANCE_MS`` (60 s), "now"
                   being the writer's clock (injectable: ``CandleLake(clock=...)``); only
                   checked when a clock is given (writes and status, never plain reads)
off_grid           ts is not on the timeframe's grid (see ``schema.grid_offset_ms``)
duplicate          ts already seen earlier in the input
out_of_order       ts is earlier than a previous row (input not sorted)
=================  =======================================================================

Stored files are checked with the same rules after sorting (``check_stored``), so a file
written by an older version can be read whatever it holds: its bad rows are left out and
reported, never passed on to features, backtests or the live engine.

Gaps (a step larger than the timeframe) are not errors: they are reported, never filled.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

from tradeloop.data.schema import CANDLE_COLUMNS, grid_offset_ms
from tradeloop.errors import CandleValidationError

RULES: tuple[str, ...] = (
    "missing",
    "non_finite",
    "non_positive",
    "absurd_magnitude",
    "negative_volume",
    "high_lt_low",
    "high_below_body",
    "low_above_body",
    "before_2009",
    "in_future",
    "off_grid",
    "duplicate",
    "out_of_order",
)
MIN_TS_MS = 1_230_768_000_000  # 2009-01-01T00:00:00Z
MAX_PRICE = 1e12
MIN_PRICE = 1e-12
MAX_VOLUME = 1e18
CLOCK_TOLERANCE_MS = 60_000
_PRICES = ("open", "high", "low", "close")
_MAX_REPORTED = 20


def _rule_expr(tf_ms: int, *, now_ms: int | None) -> pl.Expr:
    ts = pl.col("ts")
    values = (*_PRICES, "volume")
    prev_max = ts.cum_max().shift(1)
    future = pl.lit(False) if now_ms is None else ts > now_ms + tf_ms + CLOCK_TOLERANCE_MS
    return (
        pl.when(pl.any_horizontal([pl.col(c).is_null() for c in ("ts", *values)]))
        .then(pl.lit("missing"))
        .when(pl.any_horizontal([~pl.col(c).is_finite() for c in values]))
        .then(pl.lit("non_finite"))
        .when(pl.min_horizontal(_PRICES) <= 0)
        .then(pl.lit("non_positive"))
        .when(
            (pl.max_horizontal(_PRICES) > MAX_PRICE)
            | (pl.min_horizontal(_PRICES) < MIN_PRICE)
            | (pl.col("volume") > MAX_VOLUME)
        )
        .then(pl.lit("absurd_magnitude"))
        .when(pl.col("volume") < 0)
        .then(pl.lit("negative_volume"))
        .when(pl.col("high") < pl.col("low"))
        .then(pl.lit("high_lt_low"))
        .when(pl.col("high") < pl.max_horizontal("open", "close"))
        .then(pl.lit("high_below_body"))
        .when(pl.col("low") > pl.min_horizontal("open", "close"))
        .then(pl.lit("low_above_body"))
        .when(ts < MIN_TS_MS)
        .then(pl.lit("before_2009"))
        .when(future)
        .then(pl.lit("in_future"))
        .when((ts - grid_offset_ms(tf_ms)) % tf_ms != 0)
        .then(pl.lit("off_grid"))
        .when(~ts.is_first_distinct())
        .then(pl.lit("duplicate"))
        .when(ts < prev_max)
        .then(pl.lit("out_of_order"))
        .otherwise(pl.lit(None, dtype=pl.String))
        .alias("rule")
    )


@dataclass(frozen=True, slots=True)
class Gap:
    """Missing candles between two stored ones (``start``/``end`` are the missing open times)."""

    start: int
    end: int
    missing: int


@dataclass(frozen=True)
class ValidationReport:
    """What validation found: the good rows, the rejected rows with their rule, and gaps."""

    source: str
    good: pl.DataFrame
    rejected: pl.DataFrame  # candle columns + "row" (0-based input row) + "rule"
    gaps: list[Gap] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.rejected.height == 0

    @property
    def rule_counts(self) -> dict[str, int]:
        """Rejected rows per rule, in the order of :data:`RULES`."""
        counts = dict(self.rejected.group_by("rule").len().iter_rows())
        return {rule: counts[rule] for rule in RULES if rule in counts}

    @property
    def summary(self) -> str:
        """``non_finite: 3 rows, off_grid: 1 row``: the rule counts in words."""
        return ", ".join(f"{r}: {n} row{'s' if n != 1 else ''}" for r, n in self.rule_counts.items())

    def raise_if_rejected(self) -> None:
        if self.ok:
            return
        rows = self.rejected.head(_MAX_REPORTED)
        violations = [(int(r["row"]), str(r["rule"]), _describe(r)) for r in rows.iter_rows(named=True)]
        first_row, first_rule, first_detail = violations[0]
        raise CandleValidationError(
            f"{self.source}: row {first_row} breaks rule '{first_rule}' ({first_detail}); "
            f"{self.rejected.height} bad row(s) in all ({self.summary}). Nothing was written. "
            "Fix the input, or import with --quarantine to set bad rows aside and keep the rest.",
            source=self.source,
            violations=violations,
        )


def _describe(row: dict) -> str:
    keys = ("ts", "open", "high", "low", "close", "volume")
    return ", ".join(f"{k}={row[k]}" for k in keys)


def validate_candles(
    frame: pl.DataFrame, *, timeframe_ms: int, source: str, now_ms: int | None = None
) -> ValidationReport:
    """Check candles against every rule; return good rows (sorted) and rejected rows.

    ``frame`` must already have the candle columns (see ``coerce_candles``). ``now_ms`` (the
    writer's clock) enables the ``in_future`` rule.
    """
    tagged = frame.with_row_index("row").with_columns(_rule_expr(timeframe_ms, now_ms=now_ms))
    return _split(tagged, timeframe_ms=timeframe_ms, source=source)


def check_stored(
    frame: pl.DataFrame, *, timeframe_ms: int, now_ms: int | None = None
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The rules applied to stored rows as they are: ``(good, rejected)``.

    Rows are sorted by ``ts`` first, so an unsorted file loses nothing; ``good`` has the
    candle columns only, ``rejected`` keeps every column of ``frame`` (say, the file and
    the row in it) plus ``rule``.
    """
    tagged = frame.sort("ts", nulls_last=True, maintain_order=True).with_columns(
        _rule_expr(timeframe_ms, now_ms=now_ms)
    )
    rejected = tagged.filter(pl.col("rule").is_not_null())
    good = tagged.filter(pl.col("rule").is_null()).select(CANDLE_COLUMNS)
    return good, rejected


def _split(tagged: pl.DataFrame, *, timeframe_ms: int, source: str) -> ValidationReport:
    rejected = tagged.filter(pl.col("rule").is_not_null()).sort("row")
    good = tagged.filter(pl.col("rule").is_null()).drop("row", "rule").sort("ts")
    return ValidationReport(source=source, good=good, rejected=rejected, gaps=find_gaps(good["ts"], timeframe_ms))


def find_gaps(ts: pl.Series, timeframe_ms: int) -> list[Gap]:
    """Every step between consecutive (sorted, unique) open times larger than one timeframe."""
    if ts.len() < 2:
        return []
    frame = pl.DataFrame({"ts": ts}).with_columns(prev=pl.col("ts").shift(1))
    steps = frame.filter((pl.col("ts") - pl.col("prev")) > timeframe_ms)
    return [
        Gap(start=prev + timeframe_ms, end=cur - timeframe_ms, missing=(cur - prev) // timeframe_ms - 1)
        for cur, prev in steps.select("ts", "prev").iter_rows()
    ]
