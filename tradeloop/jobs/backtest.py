"""A backtest job: the steps ``tradeloop backtest`` takes (``tradeloop.cli.backtest_cmd``) on
the lake's candles, with a small JSON summary as its result.

Steps: read the series, compute the strategy's signals on the whole stored history (so
indicators start warm), cut to ``[start, end)``, run :func:`tradeloop.backtest.run_backtest`,
and summarise with :func:`tradeloop.performance.result_stats` (buy and hold beside it).
NaN metrics (undefined, e.g. a Sharpe without trades) are ``null`` in the result: JSON has no NaN.
"""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import polars as pl

from tradeloop.backtest import run_backtest
from tradeloop.data import CandleLake
from tradeloop.errors import DataError
from tradeloop.jobs.model import BacktestParams
from tradeloop.performance import result_stats
from tradeloop.strategies import get_strategy


def _number(value: float | int) -> float | int | None:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat()


def run_backtest_job(params: BacktestParams, *, lake: CandleLake) -> dict[str, Any]:
    """Backtest ``params`` on ``lake``'s candles; the summary (module docstring).

    Raises
    ------
    SeriesNotFoundError
        A series is not stored.
    DataError
        No bar of the series lies in ``[start, end)``.
    """
    strategy = get_strategy(params.strategy, **params.params)
    keys = params.keys()
    signals = strategy.signals(lake.read_many(keys), by="symbol")
    span = params.range_ms()
    if span is not None:
        signals = signals.filter(pl.col("ts").is_between(*span, closed="left"))
    if signals.height == 0:
        raise DataError(
            f"no bars of {', '.join(k.label for k in keys)} between start={params.start} and end={params.end}; "
            "pick dates inside the stored range (GET the series' coverage)"
        )
    result = run_backtest(signals, params.config, timeframe=params.timeframe, risk=params.risk)
    result = replace(result, strategy=strategy.describe())
    stats = result_stats(result)
    present = set(signals["symbol"].unique().to_list())
    return {
        "strategy": result.strategy,
        "series": [k.label for k in keys if k.symbol in present],
        "start": _iso(stats.start_ms),
        "end": _iso(stats.end_ms),
        "bars": stats.bars,
        "trades": result.trades.height,
        "metrics": {name: _number(v) for name, v in stats.strategy.as_dict().items()},
        "buy_and_hold": (
            {name: _number(v) for name, v in stats.benchmark.as_dict().items()} if stats.benchmark else None
        ),
        "risk_denials": result.risk_denials.height,
        "kill_switch_trips": result.kill_switch_trips.height,
    }
