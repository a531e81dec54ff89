"""The main job on the bundled sample: import -> features -> backtests -> metrics table."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import polars as pl

from tradeloop.backtest import BacktestConfig, backtest_strategy
from tradeloop.data import CandleLake, SeriesKey
from tradeloop.data.importer import import_sample
from tradeloop.data.schema import timeframe_ms
from tradeloop.features import compute_features
from tradeloop.performance import result_metrics
from tradeloop.strategies import Breakout, MeanReversion, Momentum, SmaCross, Strategy

#: the series the demo backtests: (exchange, symbol, timeframe)
DEMO_SERIES: tuple[tuple[str, str, str], ...] = (
    ("coinbase", "BTC-USD", "4h"),
    ("coinbase", "ETH-USD", "4h"),
    ("coinbase", "BTC-USD", "1h"),
    ("binanceus", "ETH-USD", "5m"),
    ("bitstamp", "BTC-USD", "1m"),
)


def demo_strategies() -> list[Strategy]:
    return [SmaCross(fast=10, slow=30), Momentum(), MeanReversion(), Breakout()]


@dataclass(frozen=True)
class DemoReport:
    imported: int
    feature_rows: int
    feature_columns: list[str]
    metrics: pl.DataFrame  # one row per strategy and series


def run_demo(
    lake: CandleLake,
    *,
    config: BacktestConfig | None = None,
    on_step: Callable[[str], None] | None = None,
) -> DemoReport:
    """Import the sample, compute features, backtest every strategy on every demo series."""
    config = config or BacktestConfig(fee_rate=0.001, slippage=0.0005, cash_sharing=False)
    results = import_sample(lake)
    rows = []
    feature_rows = 0
    feature_cols: list[str] = []
    for exchange, symbol, timeframe in DEMO_SERIES:
        key = SeriesKey(exchange, symbol, timeframe)
        candles = lake.read(key).with_columns(symbol=pl.lit(symbol))
        features = compute_features(candles)
        feature_rows += features.height
        feature_cols = [c for c in features.columns if c not in candles.columns]
        for strategy in demo_strategies():
            if on_step:
                on_step(f"{strategy.name} on {key.label}")
            result = backtest_strategy(strategy, candles, config, timeframe=timeframe)
            metrics = result_metrics(result).drop("portfolio")
            rows.append(
                pl.DataFrame(
                    {
                        "strategy": [strategy.describe()],
                        "series": [key.label],
                        "bars": [candles.height],
                        "days": [candles.height * timeframe_ms(timeframe) / 86_400_000],
                    }
                ).hstack(metrics)
            )
    return DemoReport(
        imported=sum(r.added for r in results),
        feature_rows=feature_rows,
        feature_columns=feature_cols,
        metrics=pl.concat(rows),
    )
