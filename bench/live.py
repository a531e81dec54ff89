"""Live path figures: replay N symbols of 1m candles through the live engine (replay feed,
paper broker, promoted model, SQLite, in-process bus) and measure

* candles processed per second (replay as fast as possible),
* p50/p99 latency from a bar's arrival (all symbols' candles closed) to the decision, and
  to its orders being committed in the operational database,
* CPU per bar against the 60 s a 1m bar lasts: "keeps up with real time" when the engine
  needs less than one core, i.e. CPU seconds per bar < 60.

Each size runs twice: with the risk engine on (every pre-trade limit set, none binding, so
each check runs on every intent; the kill switch armed) and off (``RiskConfig(bypass=True)``).

Candles are a synthetic random walk (there are no 500 real 1m series to bundle); the model
is trained on the bundled real sample as the research pipeline would.

Run:  .venv/bin/python bench/live.py                 (50 and 500 symbols)
      .venv/bin/python bench/live.py --symbols 50 --bars 300
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MINUTE = 60_000


def train_champion(root: Path, *, fast: int = 10, slow: int = 40, max_age_ms: int | None = None) -> int:
    """Train and promote an SMA(fast, slow) cross threshold model on the bundled sample, its bar
    at the median probability (``max_age_ms``: how long it is trusted); its trained_until."""
    from tradeloop.data import CandleLake, SeriesKey
    from tradeloop.data.importer import import_sample
    from tradeloop.registry import Lineage, ModelRegistry
    from tradeloop.research.walkforward import fit_threshold
    from tradeloop.strategies import SmaCross
    from tradeloop.thresholds import BarrierConfig, meta_dataset

    lake = CandleLake(root / "sample-lake")
    import_sample(lake)
    candles = lake.read_many([SeriesKey("coinbase", s, "4h") for s in ("BTC-USD", "ETH-USD")]).sort("symbol", "ts")
    strategy, barriers = SmaCross(fast=fast, slow=slow), BarrierConfig()
    events = meta_dataset(candles, strategy, barriers=barriers)
    model = fit_threshold(events, strategy, barriers)
    model.estimator.threshold_ = float(np.median(model.probabilities(events)))  # take about half the entries
    if max_age_ms is not None:
        model.max_age_ms = max_age_ms
    registry = ModelRegistry(root / "registry")
    registry.promote("sma_cross", registry.register(model.save(root / "model")), lineage=Lineage(run_id="bench"))
    return model.trained_until


def synthetic_lake(root: Path, *, symbols: int, bars: int, end_ts: int, seed: int = 11) -> list[str]:
    from tradeloop.data import CandleLake, SeriesKey

    lake = CandleLake(root / "lake")
    rng = np.random.default_rng(seed)
    ts = end_ts - MINUTE * np.arange(bars)[::-1]
    names = [f"S{j:03d}-USDT" for j in range(symbols)]
    for name in names:
        close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.001, bars)))
        open_ = np.concatenate([[close[0]], close[:-1]])
        spread = np.abs(rng.normal(0.0, 0.0005, bars))
        frame = pl.DataFrame(
            {
                "ts": ts,
                "open": open_,
                "high": np.maximum(open_, close) * (1 + spread),
                "low": np.minimum(open_, close) * (1 - spread),
                "close": close,
                "volume": rng.lognormal(3.0, 0.5, bars),
            }
        )
        lake.write(SeriesKey("binance", name, "1m"), frame)
    return names


def risk_config(on: bool):
    """Every limit set and armed, none binding (on), or the engine bypassed (off)."""
    from tradeloop.risk import RiskConfig

    if not on:
        return RiskConfig(bypass=True)
    return RiskConfig(
        max_order_notional=1e12,
        max_position_notional=1e12,
        max_gross_exposure=1e3,
        max_net_exposure=1e3,
        max_open_positions=100_000,
        max_orders=1_000_000,
        price_band=0.5,
        daily_loss_limit=0.9,
        max_drawdown=0.99,
    )


def run(symbols: int, bars: int, window: int, *, risk: bool) -> dict:
    from live.runner import SessionConfig, run_session
    from tradeloop.settings import Settings

    root = Path(tempfile.mkdtemp(prefix="tradeloop-live-bench-"))
    until = train_champion(root)
    end = until - until % MINUTE + (bars + 1) * MINUTE  # every replayed bar after the training end: out of sample
    names = synthetic_lake(root, symbols=symbols, bars=bars + window, end_ts=end)
    settings = Settings(TRADELOOP_DATA_DIR=str(root))
    config = SessionConfig(
        name="bench",
        exchange="binance",
        symbols=tuple(names),
        timeframe="1m",
        start=end - (bars - 1) * MINUTE,
        window_bars=window,
        risk=risk_config(risk),
    )
    cpu0, wall0 = time.process_time(), time.perf_counter()
    engine = asyncio.run(run_session(settings, config))
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    decision = np.array(engine.latency.decision) / 1e6
    stored = np.array(engine.latency.stored) / 1e6
    orders = len(engine.store.orders(engine.session.id))
    return {
        "symbols": symbols,
        "risk": "on" if risk else "off",
        "bars": engine.bars,
        "window": window,
        "orders": orders,
        "candles_per_s": symbols * engine.bars / wall,
        "cpu_per_bar_ms": cpu / engine.bars * 1e3,
        "cores_at_real_time": cpu / engine.bars / 60.0,
        "decision_p50": np.percentile(decision, 50),
        "decision_p99": np.percentile(decision, 99),
        "stored_p50": np.percentile(stored, 50),
        "stored_p99": np.percentile(stored, 99),
        "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--symbols", type=int, nargs="*", default=[50, 500])
    parser.add_argument("--bars", type=int, default=300, help="live bars replayed per run")
    parser.add_argument("--window", type=int, default=400, help="bars of history each decision sees")
    args = parser.parse_args()
    rows = [run(n, args.bars, args.window, risk=on) for n in args.symbols for on in (True, False)]
    head = (
        f"{'symbols':>7} {'risk':>4} {'bars':>5} {'window':>6} {'orders':>6} {'candles/s':>10} {'CPU/bar ms':>10} "
        f"{'cores@1m':>8} {'decide p50':>10} {'p99':>7} {'stored p50':>10} {'p99':>7} {'peak MB':>8}"
    )
    print("\nlive path: replay feed -> features + strategy + threshold model -> orders in SQLite (ms)\n" + head)
    print("-" * len(head))
    for r in rows:
        print(
            f"{r['symbols']:>7} {r['risk']:>4} {r['bars']:>5} {r['window']:>6} {r['orders']:>6} "
            f"{r['candles_per_s']:>10.0f} "
            f"{r['cpu_per_bar_ms']:>10.1f} {r['cores_at_real_time']:>8.4f} {r['decision_p50']:>10.1f} "
            f"{r['decision_p99']:>7.1f} {r['stored_p50']:>10.1f} {r['stored_p99']:>7.1f} {r['peak_mb']:>8.0f}"
        )


if __name__ == "__main__":
    main()
