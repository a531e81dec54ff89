"""The gate's evidence is live behaviour: a walk-forward test period, simulated under the
retrain policy (refits at the policy's times, failed refits, ageing, the stale rule), gives
the same fills and equity as the live engine replaying that period with the same refits
promoted through the registry (``pipelines.replay``), on the real sample."""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from live.runner import SessionConfig
from pipelines.replay import replay_with_retrains
from tradeloop.backtest import BacktestConfig, run_backtest
from tradeloop.data import CandleLake, SeriesKey
from tradeloop.data.importer import import_sample
from tradeloop.ops import EquityPoint, OpsStore
from tradeloop.registry import ModelRegistry
from tradeloop.research.policy import RetrainPolicy
from tradeloop.research.steps import build_params
from tradeloop.research.walkforward import policy_schedule, simulate, stale_rows
from tradeloop.settings import Settings
from tradeloop.thresholds import meta_dataset
from tradeloop.thresholds.decide import enrich

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "app"))  # the dashboard's modules, as it runs them
import comparison
import session_data

SYMBOLS = ("BTC-USD", "ETH-USD")
BAR_MS, EMBARGO_BARS, COST = 4 * 3_600_000, 6, 0.002
PARAMS = {"strategy": "sma_cross", "fast": 10, "slow": 40, "profit_mult": 2.0, "stop_mult": 1.0, "horizon": 24}
# a rolling training window that sometimes holds too few events: refits fail, models age
POLICY = RetrainPolicy(retrain_every_days=30, max_model_age_days=30, training_window_days=420)
ESTIMATOR = {"min_samples": 60}


def ms(day: str) -> int:
    return int(datetime.fromisoformat(day).replace(tzinfo=UTC).timestamp() * 1000)


@pytest.mark.timeout(900)
def test_a_walk_forward_period_replayed_live_gives_the_same_fills(tmp_path: Path) -> None:
    settings = Settings(TRADELOOP_DATA_DIR=str(tmp_path))
    lake = CandleLake(settings.lake_dir, quarantine_root=settings.quarantine_dir)
    import_sample(lake)
    candles = (
        lake.read_many([SeriesKey("coinbase", s, "4h") for s in SYMBOLS])
        .select("symbol", "ts", "open", "high", "low", "close", "volume")
        .sort("symbol", "ts")
    )
    start, end = ms("2017-06-01"), ms("2018-06-01") - BAR_MS

    # research: the walk-forward's simulation of this test period
    strategy, barriers = build_params(PARAMS, cost=COST)
    events = meta_dataset(candles, strategy, barriers=barriers)
    schedule = policy_schedule(
        events,
        strategy,
        barriers,
        policy=POLICY,
        start=start,
        end=end,
        embargo_ms=EMBARGO_BARS * BAR_MS,
        bar_ms=BAR_MS,
        estimator_params=ESTIMATOR,
    )
    decided = simulate(enrich(candles, strategy), schedule, start=start, end=end)
    backtest = BacktestConfig(fee_rate=COST / 2, cash_sharing=True, fraction=0.5, close_at_end=False)
    result = run_backtest(decided, backtest, timeframe="4h")
    fitted = [r.fitted for r in schedule]
    # the period exercises every rule: no model yet, refits, a failed refit after a good one
    # (the model in force ages), stale bars, and enough trades to compare
    assert not fitted[0] and any(fitted) and any(not f for f in fitted[fitted.index(True) :])
    assert stale_rows(decided, schedule) > 0 and result.trades.height >= 10

    # live: the engine replays the period; the same refits are promoted at the same times
    session = SessionConfig(
        name="wf-replay", symbols=SYMBOLS, start=start, end=end, fraction=0.5, fee_rate=COST / 2, window_bars=400
    )
    told: list[tuple] = []
    engine, steps = asyncio.run(
        replay_with_retrains(
            settings,
            session,
            params=PARAMS,
            policy=POLICY,
            start=start,
            end=end,
            embargo_bars=EMBARGO_BARS,
            cost=COST,
            estimator_params=ESTIMATOR,
            on_step=lambda *a: told.append(a),
        )
    )
    assert [s.at for s in steps] == [r.at for r in schedule]
    assert told == [(step, k + 1, len(steps)) for k, step in enumerate(steps)]  # progress after each segment
    assert [s.artifact is not None for s in steps] == fitted

    store = OpsStore.open(settings.effective_database_url)
    sid = store.session("wf-replay").id
    fills = sorted((f.ts, f.symbol, f.side, f.quantity, f.price) for f in store.fills(sid))
    trades = result.trades
    expected = [(r["entry_ts"], r["symbol"], "buy", r["qty"], r["entry_price"]) for r in trades.iter_rows(named=True)]
    expected += [
        (r["exit_ts"], r["symbol"], "sell", r["qty"], r["exit_price"])
        for r in trades.iter_rows(named=True)
        if not r["is_open"]
    ]
    expected.sort()
    assert [f[:3] for f in fills] == [e[:3] for e in expected]
    np.testing.assert_allclose([f[3] for f in fills], [e[3] for e in expected], rtol=1e-9)
    np.testing.assert_allclose([f[4] for f in fills], [e[4] for e in expected], rtol=1e-12)
    live_equity = store.frame(EquityPoint, sid).sort("ts")
    research_equity = result.equity.group_by("ts").agg(pl.col("equity").sum()).sort("ts")
    assert live_equity["ts"].to_list() == research_equity["ts"].to_list()
    np.testing.assert_allclose(live_equity["equity"].to_numpy(), research_equity["equity"].to_numpy(), rtol=1e-9)

    # the dashboard's "backtest, same terms" follows the models in force bar by bar, as recorded: equal to live
    schedule_in_force = session_data.in_force_schedule(store, sid)
    assert len({artifact for _, artifact in schedule_in_force}) >= 3  # refits and the fallback, by bar
    registry = ModelRegistry(settings.registry_dir)
    periods = comparison.in_force_periods(schedule_in_force, lambda a: registry.model_of(a, strategy="sma_cross"))
    candles = session_data.session_candles(
        CandleLake(settings.lake_dir),
        store.session("wf-replay"),
        start=comparison.warmup_start(start, "4h"),
        end=end,
        before_bars=0,
    )
    same_terms, _ = comparison.session_backtest(
        candles, periods, BacktestConfig(**store.session("wf-replay").config), start=start, end=end, timeframe="4h"
    )
    assert same_terms["ts"].to_list() == live_equity["ts"].to_list()
    np.testing.assert_allclose(same_terms["equity"].to_numpy(), live_equity["equity"].to_numpy(), rtol=1e-9)
    store.close()
