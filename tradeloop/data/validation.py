"""Candle validation on the way into the lake, and gap detection.

Rules (each row gets the first rule it breaks):

=================  =======================================================================
rule               meaning
=================  =======================================================================
null_or_nan        a value is missing or NaN
non_positive       open/high/low/close <= 0
negative_volume    volume < 0
high_lt_low        high < low
high_below_body    high < max(open, close)
low_above_body     low > min(open, close)
off_grid           ts is not a multiple of the timeframe (wrong spacing)
duplicate          ts already seen earlier in the input
out_of_order       ts is earlier than a previous row (input not sorted)
=================  =======================================================================

Gaps (a step larger than the timeframe) are not errors: they are reported, never filled.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

from tradeloop.errors import CandleValidationError

RULES: tuple[str, ...] = (
    "null_or_nan",
    "non_positive",
    "negative_volume",
    "high_lt_low",
    "high_below_body",
    "low_above_body",
    "off_grid",
    "duplicate",
    "out_of_order",
)
_PRICES = ("open", "high", "low", "close")
_MAX_REPORTED = 20


def _rule_expr(tf_ms: int) -> pl.Expr:
    ts = pl.col("ts")
    any_null = pl.any_horizontal(
        [pl.col(c).is_null() for c in ("ts", *_PRICES, "volume")]
        + [pl.col(c).is_nan() for c in (*_PRICES, "volume")]
    )
    prev_max = ts.cum_max().shift(1)
    return (
        pl.when(any_null).then(pl.lit("null_or_nan"))
        .when(pl.min_horizontal(_PRICES) <= 0).then(pl.lit("non_positive"))
        .when(pl.col("volume") < 0).then(pl.lit("negative_volume"))
        .when(pl.col("high") < pl.col("low")).then(pl.lit("high_lt_low"))
        .when(pl.col("high") < pl.max_horizontal("open", "close")).then(pl.lit("high_below_body"))
        .when(pl.col("low") > pl.min_horizontal("open", "close")).then(pl.lit("low_above_body"))
        .when(ts % tf_ms != 0).then(pl.lit("off_grid"))
        .when(~ts.is_first_distinct()).then(pl.lit("duplicate"))
        .when(ts < prev_max).then(pl.lit("out_of_order"))
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

    def raise_if_rejected(self) -> None:
        if self.ok:
            return
        rows = self.rejected.head(_MAX_REPORTED)
        violations = [
            (int(r["row"]), str(r["rule"]), _describe(r)) for r in rows.iter_rows(named=True)
        ]
        first_row, first_rule, first_detail = violations[0]
        counts = self.rejected.group_by("rule").len().sort("rule")
        summary = ", ".join(f"{r}={n}" for r, n in counts.iter_rows())
        raise CandleValidationError(
            f"{self.source}: row {first_row} breaks rule '{first_rule}' ({first_detail}); "
            f"{self.rejected.height} bad row(s) in all [{summary}]. Nothing was written. "
            "Fix the input, or import with --quarantine to set bad rows aside and keep the rest.",
            source=self.source,
            violations=violations,
        )


def _describe(row: dict) -> str:
    keys = ("ts", "open", "high", "low", "close", "volume")
    return ", ".join(f"{k}={row[k]}" for k in keys)


def validate_candles(frame: pl.DataFrame, *, timeframe_ms: int, source: str) -> ValidationReport:
    """Check candles against every rule; return good rows (sorted) and rejected rows.

    ``frame`` must already have the candle columns (see ``coerce_candles``).
    """
    tagged = frame.with_row_index("row").with_columns(_rule_expr(timeframe_ms))
    rejected = tagged.filter(pl.col("rule").is_not_null())
    good = tagged.filter(pl.col("rule").is_null()).drop("row", "rule").sort("ts")
    return ValidationReport(
        source=source, good=good, rejected=rejected, gaps=find_gaps(good["ts"], timeframe_ms)
    )


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
