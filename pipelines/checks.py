"""Asset checks of the research pipeline. Each returns a dagster AssetCheckResult with the
numbers it judged; blocking ones (ERROR) stop downstream assets in the same run."""

import time

import numpy as np
import polars as pl

import dagster as dg
from tradeloop.data import CandleLake, SeriesKey
from tradeloop.data.lake import series_status
from tradeloop.data.schema import timeframe_ms
from tradeloop.features import DEFAULT_FEATURES, compute_features

MIN_COVERAGE = 0.99
STALE_AFTER_BARS = 3


def candle_quality(lake: CandleLake, key: SeriesKey, *, now_ms: int | None = None) -> list[dg.AssetCheckResult]:
    """Duplicates and gaps block (ERROR); staleness warns (a research sample is historical)."""
    ts = lake.scan(key).select("ts").collect()["ts"]  # stored order: one read serves every check
    status = series_status(key, ts)
    duplicates = ts.len() - ts.n_unique()
    unsorted = int((ts.diff().drop_nulls() <= 0).sum())
    ok = duplicates == 0 and unsorted == 0 and status.coverage >= MIN_COVERAGE and ts.len() > 0
    now = int(time.time() * 1000) if now_ms is None else now_ms
    age_bars = (now - (status.last_ts or 0)) / timeframe_ms(key.timeframe) - 1
    return [
        dg.AssetCheckResult(check_name="candle_quality", passed=bool(ok), severity=dg.AssetCheckSeverity.ERROR,
                            metadata={"rows": ts.len(), "duplicates": duplicates, "unsorted": unsorted,
                                      "gaps": len(status.gaps), "missing_candles": status.missing,
                                      "coverage": float(status.coverage), "min_coverage": MIN_COVERAGE}),
        dg.AssetCheckResult(check_name="candle_freshness", passed=bool(age_bars <= STALE_AFTER_BARS),
                            severity=dg.AssetCheckSeverity.WARN,
                            metadata={"last_ts": status.last_ts or 0, "bars_behind_now": float(age_bars)}),
    ]


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
    diff = max(float(np.nanmax(np.abs(joined[n].to_numpy() - joined[f"{n}_full"].to_numpy()), initial=0.0))
               for n in names)
    passed = not problems and diff < 1e-9
    return dg.AssetCheckResult(check_name="feature_sanity", passed=passed, severity=dg.AssetCheckSeverity.ERROR,
                               metadata={"nan_beyond_warmup": str(problems or "none"),
                                         "lookahead_max_abs_diff": diff, "rows_checked": joined.height})


def backtest_sanity(metrics: dict, equity: pl.DataFrame) -> dg.AssetCheckResult:
    """Finite, positive equity; out-of-sample figures present; the model took some trades."""
    values = equity["equity"].to_numpy()
    finite = bool(np.isfinite(values).all() and (values > 0).all())
    oos = metrics["oos"]
    has_oos = oos["bars"] > 0 and np.isfinite(oos["sharpe_per_bar"])
    trades = metrics["full_history"]["trades"]
    return dg.AssetCheckResult(check_name="backtest_sanity", passed=bool(finite and has_oos and trades > 0),
                               severity=dg.AssetCheckSeverity.ERROR,
                               metadata={"equity_finite_positive": finite, "oos_bars": int(oos["bars"]),
                                         "trades": int(trades)})
