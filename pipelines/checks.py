"""Asset checks of the research pipeline. Each returns a dagster AssetCheckResult with the
numbers it judged; blocking ones (ERROR) stop downstream assets in the same run. The specs
(``*_SPEC``) say in words what each check expects; the results say it again with the run's
numbers, times as dates."""

import time

import dagster as dg
import numpy as np
import polars as pl

from pipelines.metadata import rounded, timestamp
from tradeloop.data import CandleLake, SeriesKey
from tradeloop.data.lake import series_status
from tradeloop.data.schema import timeframe_ms
from tradeloop.features import DEFAULT_FEATURES, compute_features
from tradeloop.performance.format import pct, when

MIN_COVERAGE = 0.99
STALE_AFTER_BARS = 3

CANDLE_QUALITY_SPEC = dg.AssetCheckSpec(
    "candle_quality",
    asset="candles",
    blocking=True,
    description=f"Blocks the research chain when the symbol's stored candles have a duplicate or out-of-order "
    f"time, or cover less than {MIN_COVERAGE:.0%} of the bars between the first and the last "
    "(the rest are gaps).",
)
CANDLE_FRESHNESS_SPEC = dg.AssetCheckSpec(
    "candle_freshness",
    asset="candles",
    description=f"Warns (never blocks: a research sample is historical) when the newest candle is more than "
    f"{STALE_AFTER_BARS} bars of its timeframe behind now; the result gives the newest candle's date "
    "and the date from which a candle would count as fresh.",
)
FEATURE_SANITY_SPEC = dg.AssetCheckSpec(
    "feature_sanity",
    asset="features",
    blocking=True,
    description="Blocks when a feature is null or NaN after its warm-up, or when recomputing the features on the "
    "first half of each symbol's history changes a row (a look-ahead).",
)
BACKTEST_SANITY_SPEC = dg.AssetCheckSpec(
    "backtest_sanity",
    asset="backtest",
    blocking=True,
    description="Blocks the promotion when the equity curve has a non-finite or non-positive value, the "
    "out-of-sample figures are missing, or the model took no trade.",
)


def candle_quality(lake: CandleLake, key: SeriesKey, *, now_ms: int | None = None) -> list[dg.AssetCheckResult]:
    """Duplicates and gaps block (ERROR); staleness warns (a research sample is historical)."""
    ts = lake.scan(key).select("ts").collect()["ts"]  # stored order: one read serves every check
    status = series_status(key, ts)
    duplicates = ts.len() - ts.n_unique()
    unsorted = int((ts.diff().drop_nulls() <= 0).sum())
    ok = duplicates == 0 and unsorted == 0 and status.coverage >= MIN_COVERAGE and ts.len() > 0
    return [
        dg.AssetCheckResult(
            check_name="candle_quality",
            passed=bool(ok),
            severity=dg.AssetCheckSeverity.ERROR,
            description=f"{ts.len():,} candles, {duplicates} duplicate and {unsorted} out-of-order "
            f"times, {len(status.gaps)} gaps: {pct(status.coverage)} coverage "
            f"(at least {MIN_COVERAGE:.0%} expected)",
            metadata={
                "rows": ts.len(),
                "duplicates": duplicates,
                "unsorted": unsorted,
                "gaps": len(status.gaps),
                "missing_candles": status.missing,
                "coverage": rounded(status.coverage),
                "min_coverage": MIN_COVERAGE,
            },
        ),
        candle_freshness(key, status.last_ts, now_ms=int(time.time() * 1000) if now_ms is None else now_ms),
    ]


def candle_freshness(key: SeriesKey, last_ts: int | None, *, now_ms: int) -> dg.AssetCheckResult:
    """Fresh while the newest candle opened at most ``STALE_AFTER_BARS`` bars before the bar
    that is open now; the result says so in dates."""
    bar = timeframe_ms(key.timeframe)
    fresh_from = now_ms - (STALE_AFTER_BARS + 1) * bar  # the oldest candle open time still fresh now
    if last_ts is None:
        return dg.AssetCheckResult(
            check_name="candle_freshness",
            passed=False,
            severity=dg.AssetCheckSeverity.WARN,
            description=f"no candle stored; fresh would be a candle opened on or after {when(fresh_from)} UTC",
            metadata={"now": timestamp(now_ms), "fresh_from": timestamp(fresh_from)},
        )
    behind = (now_ms - last_ts) / bar - 1
    passed = last_ts >= fresh_from
    verdict = "fresh" if passed else f"stale: {behind:,.0f} bars behind now"
    return dg.AssetCheckResult(
        check_name="candle_freshness",
        passed=passed,
        severity=dg.AssetCheckSeverity.WARN,
        description=f"newest {key.timeframe} candle opened {when(last_ts)} UTC; fresh means one opened on or after "
        f"{when(fresh_from)} UTC ({STALE_AFTER_BARS} bars before now, {when(now_ms)} UTC): {verdict}",
        metadata={
            "newest_candle": timestamp(last_ts),
            "fresh_from": timestamp(fresh_from),
            "now": timestamp(now_ms),
            "bars_behind_now": rounded(behind, 1),
        },
    )


def feature_sanity(features: pl.DataFrame) -> dg.AssetCheckResult:
    """No NaN/null beyond each feature's warm-up, and no look-ahead: recomputing on the first
    half of each symbol's history gives the same rows."""
    problems = {}
    for spec in DEFAULT_FEATURES:
        after_warmup = features.filter(pl.int_range(pl.len()).over("symbol") > spec.warmup)
        bad = after_warmup.select((pl.col(spec.name).is_null() | pl.col(spec.name).is_nan()).sum()).item()
        if bad:
            problems[spec.name] = int(bad)
    candles = features.select("symbol", "ts", "open", "high", "low", "close", "volume")
    half = candles.filter(pl.int_range(pl.len()).over("symbol") < pl.len().over("symbol") // 2)
    names = [s.name for s in DEFAULT_FEATURES]
    recomputed = compute_features(half).select("symbol", "ts", *names)
    joined = recomputed.join(features.select("symbol", "ts", *names), on=["symbol", "ts"], suffix="_full")
    diff = max(
        float(np.nanmax(np.abs(joined[n].to_numpy() - joined[f"{n}_full"].to_numpy()), initial=0.0)) for n in names
    )
    passed = not problems and diff < 1e-9
    return dg.AssetCheckResult(
        check_name="feature_sanity",
        passed=passed,
        severity=dg.AssetCheckSeverity.ERROR,
        description=(
            "no null or NaN after the warm-ups" if not problems else f"nulls or NaN after the warm-up: {problems}"
        )
        + f"; recomputed on half the history, the largest change is {diff:.2g} "
        "(below 1e-9 expected)",
        metadata={
            "nan_beyond_warmup": str(problems or "none"),
            "lookahead_max_abs_diff": diff,
            "rows_checked": joined.height,
        },
    )


def backtest_sanity(metrics: dict, equity: pl.DataFrame) -> dg.AssetCheckResult:
    """Finite, positive equity; out-of-sample figures present; the model took some trades."""
    values = equity["equity"].to_numpy()
    finite = bool(np.isfinite(values).all() and (values > 0).all())
    oos = metrics["oos"]
    has_oos = oos["bars"] > 0 and np.isfinite(oos["sharpe_per_bar"])
    trades = metrics["full_history"]["trades"]
    return dg.AssetCheckResult(
        check_name="backtest_sanity",
        passed=bool(finite and has_oos and trades > 0),
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={"equity_finite_positive": finite, "oos_bars": int(oos["bars"]), "trades": int(trades)},
    )
