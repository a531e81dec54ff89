"""Compile tradeloop's numba kernels into their on-disk caches before the suite runs.

A fresh clone has no compiled kernels: each pytest-xdist worker would compile the same ones
for itself (the backtest kernels with a risk pass take tens of seconds each). ``make test``
runs this script beside the lint step, on the core mypy leaves idle, so the workers load the
kernels from ``__pycache__`` instead. It is a cache warmer, not a test: a call that fails is
printed and skipped (the suite reports it properly), and its exit code is always 0.

Run:  .venv/bin/python tests/warm_kernels.py
"""

from __future__ import annotations

import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

H4 = 4 * 3_600_000


def candles(symbols: int = 3, bars: int = 120, seed: int = 5) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    frames = []
    for j in range(symbols):
        close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.02, bars)))
        open_ = np.concatenate([[close[0]], close[:-1]])
        frames.append(
            pl.DataFrame(
                {
                    "ts": np.arange(bars, dtype=np.int64) * H4,
                    "symbol": f"S{j}",
                    "open": open_,
                    "high": np.maximum(open_, close) * 1.01,
                    "low": np.minimum(open_, close) * 0.99,
                    "close": close,
                    "volume": rng.uniform(1.0, 10.0, bars),
                }
            )
        )
    return pl.concat(frames)


def steps() -> list[tuple[str, Callable[[], object]]]:
    from tradeloop.backtest import BacktestConfig, backtest_strategy, sweep
    from tradeloop.features.latest import latest_features
    from tradeloop.features.pipeline import DEFAULT_FEATURES
    from tradeloop.risk import RiskConfig
    from tradeloop.strategies import STRATEGIES

    frame = candles()
    risk = RiskConfig(max_drawdown=0.5, daily_loss_limit=0.3, max_orders=50)
    configs = {
        "shared cash": BacktestConfig(),
        "per symbol": BacktestConfig(cash_sharing=False),
        "stops": BacktestConfig(stop_loss=0.05, take_profit=0.1, trailing_stop=0.05),
        "atr stops": BacktestConfig(atr_stop=2.0, atr_trailing=3.0),
        "limit entries": BacktestConfig(entry_order="limit", limit_offset=0.002, limit_ttl_bars=3),
    }

    def run(name: str, config: BacktestConfig, risk: RiskConfig | None = None) -> Callable[[], object]:
        return lambda: backtest_strategy(STRATEGIES[name](), frame, config, timeframe="4h", risk=risk)

    out = [(f"{name}, {label}", run(name, config)) for name in STRATEGIES for label, config in configs.items()]
    out += [(f"{name}, risk", run(name, BacktestConfig(), risk)) for name in STRATEGIES]
    out.append(("risk, per symbol", run("sma_cross", BacktestConfig(cash_sharing=False), risk)))
    grid = {"fast": [3, 5], "slow": [10, 20]}
    out.append(("sweep", lambda: sweep("sma_cross", grid, frame, BacktestConfig(), timeframe="4h")))
    ts = int(frame["ts"].max())  # type: ignore[arg-type]
    out.append(("latest features", lambda: latest_features(frame.sort("symbol", "ts"), DEFAULT_FEATURES, ts=ts)))
    return out


def main() -> None:
    started = time.monotonic()
    for label, step in steps():
        try:
            step()
        except Exception:  # noqa: BLE001 - a warmer: the suite reports what is wrong
            print(f"warm_kernels: {label} failed (the suite will say why):", file=sys.stderr)
            traceback.print_exc(limit=3)
    print(f"warm_kernels: compiled in {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
