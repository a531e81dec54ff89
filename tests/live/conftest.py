"""A data folder with the bundled sample in its lake and a real champion in its registry.

The champion is trained out of sample: on the events whose labels closed before the last
``REPLAYED`` bars, the earliest bar any test replays, so every replay decides bars the model
never saw (``live.in_sample``, ``live.models``). Its maximum age covers those bars."""

from __future__ import annotations

import copy
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from tradeloop.backtest import BacktestConfig, BacktestResult, run_backtest
from tradeloop.data import CandleLake, SeriesKey
from tradeloop.data.importer import import_sample
from tradeloop.ops import EquityPoint, OpsStore
from tradeloop.registry import Lineage, ModelRegistry
from tradeloop.research.walkforward import fit_threshold
from tradeloop.risk import MarketRules, RiskConfig
from tradeloop.settings import Settings
from tradeloop.strategies import SmaCross
from tradeloop.thresholds import BarrierConfig, ThresholdModel, meta_dataset
from tradeloop.thresholds.decide import decide

SYMBOLS = ("BTC-USD", "ETH-USD")
REPLAYED = 1000  # the longest replay of any test: the last 1000 bars
MAX_AGE_MS = 200 * 86_400_000  # the replayed bars span 167 days


@dataclass(frozen=True)
class World:
    root: Path
    settings: Settings
    candles: pl.DataFrame  # both symbols, long format
    champion: str  # artifact id


def make_settings(root: Path, **extra: str) -> Settings:
    return Settings(TRADELOOP_DATA_DIR=str(root), **extra)


@pytest.fixture(scope="session")
def trained_world(tmp_path_factory: pytest.TempPathFactory) -> World:
    root = tmp_path_factory.mktemp("live-world")
    settings = make_settings(root)
    lake = CandleLake(settings.lake_dir, quarantine_root=settings.quarantine_dir)
    import_sample(lake)
    candles = lake.read_many([SeriesKey("coinbase", s, "4h") for s in SYMBOLS]).sort("symbol", "ts")
    strategy, barriers = SmaCross(fast=10, slow=40), BarrierConfig()
    first_replayed = int(candles.filter(pl.col("symbol") == SYMBOLS[0])["ts"][-REPLAYED])
    events = meta_dataset(candles, strategy, barriers=barriers).filter(pl.col("t1") < first_replayed)
    model = fit_threshold(events, strategy, barriers)
    model.max_age_ms = MAX_AGE_MS
    # this sample gives the classifier little edge, so its learned bar rejects every entry; put
    # the bar at its 30th percentile so the replays see entries taken and refused (20 and 16 of
    # the last 1000 bars' entries; 11 taken in test_server_loss's 700 bars)
    model.estimator.threshold_ = float(np.quantile(model.probabilities(events), 0.3))
    registry = ModelRegistry(settings.registry_dir)
    artifact = registry.register(model.save(root / "model"))
    registry.promote("sma_cross", artifact, lineage=Lineage(run_id="test"))
    return World(root, settings, candles, artifact)


@pytest.fixture(params=["sqlite", "postgresql"])
def world(request: pytest.FixtureRequest, trained_world: World) -> World:
    """The trained world with its operational database on SQLite, then on the real PostgreSQL."""
    if request.param == "sqlite":
        return trained_world
    return replace(
        trained_world, settings=make_settings(trained_world.root, DATABASE_URL=request.getfixturevalue("pg_url"))
    )


@pytest.fixture
def own_world(trained_world: World, tmp_path: Path) -> World:
    """The trained world with a registry and a database of its own, for tests that promote or
    write hostile files."""
    root = tmp_path / "world"
    shutil.copytree(trained_world.settings.lake_dir, root / "lake")
    registry = ModelRegistry(root / "registry")
    registry.store.put(trained_world.settings.registry_dir / "artifacts" / trained_world.champion)
    registry.promote("sma_cross", trained_world.champion, lineage=Lineage(run_id="test"))
    return replace(trained_world, root=root, settings=make_settings(root))


#: the trade ledger's name for what an order of each intent did (entries: "entry")
REASON_OF_INTENT = {
    "enter_long": "entry",
    "enter_short": "entry",
    "exit_long": "signal",
    "exit_short": "signal",
    "stop_loss": "stop_loss",
    "trailing_stop": "trailing_stop",
    "take_profit": "take_profit",
    "flatten": "kill_switch",  # the kill switch's flatten_on_kill exit
}


def backtest_orders(
    world: World, *, start: int, config: BacktestConfig, window: int, risk: RiskConfig | None = None
) -> tuple[list, float]:
    """The champion's backtest from ``start`` (``window`` bars before it warm up features only),
    under the session's ``risk`` config (``None``: no risk engine): its fills as sorted (ts,
    symbol, side, qty, price, reason), reason ``entry`` for an entry, else the trade's exit
    reason; and its final equity."""
    result = backtest_result(world, start=start, config=config, window=window, risk=risk)
    return trade_fills(result.trades), float(result.equity.sort("ts")["equity"][-1])


def backtest_result(
    world: World,
    *,
    start: int,
    config: BacktestConfig,
    window: int,
    risk: RiskConfig | None = None,
    markets: Mapping[str, MarketRules] | None = None,
) -> BacktestResult:
    """The backtest :func:`backtest_orders` reads (its risk denials and kill-switch trips too)."""
    _, model = ModelRegistry(world.settings.registry_dir).load("sma_cross")
    candles = world.candles
    first = candles.filter(pl.col("ts") < start).group_by("symbol").agg(pl.col("ts").sort().tail(window).first())
    candles = candles.filter(pl.col("ts") >= first["ts"].min())
    decided = decide(candles, model, now_ms=model.trained_until)
    decided = decided.with_columns(signal=pl.when(pl.col("ts") >= start).then(pl.col("signal")).otherwise(0))
    return run_backtest(decided, config, timeframe="4h", risk=risk, markets=markets)


def trade_fills(trades: pl.DataFrame) -> list[tuple]:
    """A backtest's trade ledger as its fills: sorted (ts, symbol, side, qty, price, reason),
    reason ``entry`` for an entry, else the trade's exit reason (open trades: no exit)."""
    rows = list(trades.iter_rows(named=True))
    side = {"long": ("buy", "sell"), "short": ("sell", "buy")}
    fills = [(r["entry_ts"], r["symbol"], side[r["side"]][0], r["qty"], r["entry_price"], "entry") for r in rows]
    fills += [
        (r["exit_ts"], r["symbol"], side[r["side"]][1], r["qty"], r["exit_price"], r["exit_reason"])
        for r in rows
        if not r["is_open"]
    ]
    return sorted(fills)


def live_fills(store: OpsStore, session_id: int) -> list[tuple]:
    """A session's stored fills as sorted (ts, symbol, side, qty, price, reason), the reason
    named from the intent of the order that filled (``REASON_OF_INTENT``)."""
    intent = {o.id: o.intent for o in store.orders(session_id)}
    return sorted(
        (f.ts, f.symbol, f.side, f.quantity, f.price, REASON_OF_INTENT[intent[f.order_id]])
        for f in store.fills(session_id)
    )


def assert_matches_backtest(
    world: World, session_name: str, *, start: int, window: int = 400, database_url: str | None = None
) -> int:
    """The session's stored fills (time, symbol, side, why, quantity, price) and final equity
    equal the backtest's; returns the fill count."""
    store = OpsStore.open(database_url or world.settings.effective_database_url)
    session = store.session(session_name)
    fills = live_fills(store, session.id)
    expected, expected_equity = backtest_orders(
        world,
        start=start,
        config=BacktestConfig(**session.config),
        window=window,
        risk=RiskConfig.parse(session.risk_config or {}),  # the limits the live engine applied
    )
    assert len(expected) >= 10, "too few trades for a meaningful parity check"
    assert [(*f[:3], f[5]) for f in fills] == [(*e[:3], e[5]) for e in expected]
    np.testing.assert_allclose([f[3] for f in fills], [e[3] for e in expected], rtol=1e-9)
    np.testing.assert_allclose([f[4] for f in fills], [e[4] for e in expected], rtol=1e-12)
    equity = store.frame(EquityPoint, session.id).sort("ts")["equity"][-1]
    assert abs(equity / expected_equity - 1) < 1e-9
    orders = store.orders(session.id)
    assert len({o.client_order_id for o in orders}) == len(orders)
    assert sum(o.status == "filled" for o in orders) == len(fills)
    store.close()
    return len(fills)


def shifted_challenger(world: World, tmp: Path, *, shift: float) -> tuple[str, ThresholdModel]:
    """The champion's model with its threshold moved by ``shift``, registered: another
    artifact of the same strategy that decides differently."""
    registry = ModelRegistry(world.settings.registry_dir)
    _, model = registry.load("sma_cross")
    estimator = copy.copy(model.estimator)
    estimator.threshold_ = model.estimator.threshold_ + shift
    other = replace(model, estimator=estimator)
    return registry.register(other.save(tmp / f"challenger{shift}")), other


def model_backtest(
    world: World, model: ThresholdModel, *, start: int, window: int, config: BacktestConfig
) -> BacktestResult:
    """``model``'s backtest from ``start`` (the ``window`` bars before it warm up features only),
    as :func:`backtest_result` runs the champion's."""
    candles = world.candles
    first = candles.filter(pl.col("ts") < start).group_by("symbol").agg(pl.col("ts").sort().tail(window).first())
    candles = candles.filter(pl.col("ts") >= first["ts"].min())
    decided = decide(candles, model, now_ms=model.trained_until)
    decided = decided.with_columns(signal=pl.when(pl.col("ts") >= start).then(pl.col("signal")).otherwise(0))
    return run_backtest(decided, config, timeframe="4h")
