"""Research/live parity for every order type the backtest simulates: a replay through the live
engine (replay feed, paper broker, the promoted model, the operational database) fills what
the backtest of that model fills on those candles, fill for fill, with the same reason
(entry, signal, stop_loss, trailing_stop, take_profit) and side, and ends with its equity.

Each session is created with its backtest config before ``run_session`` resumes it (the
runner creates new sessions with market entries only); its kill switch is off, as the
backtest has none. Shorts trade the sample's candles stored as perpetuals (``-PERP`` lake
symbols) with the champion's rule allowing shorts; spot refuses such a rule."""

from __future__ import annotations

import asyncio
import dataclasses
from collections import Counter
from pathlib import Path

import polars as pl
import pytest

from live.bus import make_bus
from live.engine import EngineConfig, LiveEngine, check_live_config, check_window
from live.models import ModelSlot
from live.runner import SessionConfig, backtest_config, make_broker, open_session, run_session
from tests.live.conftest import SYMBOLS, World, assert_matches_backtest, live_fills, make_settings
from tradeloop.backtest import BacktestConfig
from tradeloop.data import CandleLake, SeriesKey
from tradeloop.errors import ConfigError
from tradeloop.ops import EquityPoint, OpsStore
from tradeloop.registry import Lineage, ModelRegistry
from tradeloop.risk import RiskConfig
from tradeloop.strategies import SmaCross
from tradeloop.strategies.rules import ThresholdRule
from tradeloop.thresholds import Universe

BARS = 400
COSTS = {"fee_rate": 0.001, "slippage": 0.0005, "fraction": 0.5}
NO_KILL_SWITCH = RiskConfig(daily_loss_limit=None, max_drawdown=None)


def replay(world: World, name: str, config: BacktestConfig, *, bars: int = BARS) -> tuple[int, Counter]:
    """Create the session with ``config``, replay the last ``bars`` bars through the live engine,
    check it against the backtest; the replay's first bar and its fills' reasons."""
    symbols = tuple(sorted(world.candles["symbol"].unique()))
    start = int(world.candles.filter(pl.col("symbol") == symbols[0])["ts"][-bars])
    store = OpsStore.open(world.settings.effective_database_url)
    store.create_session(
        name=name,
        strategy="sma_cross",
        exchange="coinbase",
        timeframe="4h",
        symbols=list(symbols),
        mode="paper",
        init_cash=config.init_cash,
        config=config.model_dump(mode="json"),
        risk_config=NO_KILL_SWITCH.model_dump(mode="json"),
    )
    session = SessionConfig(name=name, symbols=symbols, start=start, window_bars=400)
    engine = asyncio.run(run_session(world.settings, session))
    assert engine.session.status == "finished"
    assert_matches_backtest(world, name, start=start)
    reasons = Counter(f[5] for f in live_fills(store, store.session(name).id))
    store.close()
    return start, reasons


@pytest.mark.parametrize(
    ("options", "reason"),
    [
        ({"stop_loss": 0.02}, "stop_loss"),
        ({"take_profit": 0.04}, "take_profit"),
        ({"trailing_stop": 0.03}, "trailing_stop"),
        ({"atr_stop": 1.5}, "stop_loss"),
        ({"atr_trailing": 2.0}, "trailing_stop"),
    ],
    ids=["stop_loss", "take_profit", "trailing_stop", "atr_stop", "atr_trailing"],
)
def test_protective_exits_match_the_backtest(trained_world: World, options: dict, reason: str) -> None:
    _, reasons = replay(trained_world, f"ot-{'-'.join(options)}", BacktestConfig(**COSTS, **options))
    assert reasons[reason] >= 3  # the exit under test happened, and each time where the kernel's did


def test_vol_target_sizing_matches_the_backtest(trained_world: World) -> None:
    config = BacktestConfig(**{**COSTS, "fraction": 0.9}, sizing="vol_target", vol_target=0.4)
    start, _ = replay(trained_world, "ot-vol-target", config)
    store = OpsStore.open(trained_world.settings.effective_database_url)
    session_id = store.session("ot-vol-target").id
    orders = [o for o in store.orders(session_id) if o.intent == "enter_long"]
    points = store.frame(EquityPoint, session_id)
    equity = dict(zip(points["ts"], points["equity"], strict=True))
    store.close()
    # each entry's share of equity follows the volatility, under the 0.9 cap (the parity check
    # holds the exact numbers to the backtest's)
    shares = [o.quote_amount / equity[o.decided_ts] for o in orders]
    assert len(shares) >= 5 and all(0.0 < s <= 0.9 + 1e-12 for s in shares)
    assert len({round(s, 6) for s in shares}) >= 4


def test_correlation_sizing_matches_the_backtest(trained_world: World) -> None:
    """BTC and ETH move together: the Ledoit-Wolf weights put them in one cluster, so each
    entry's share of equity stays under the cluster cap (parity holds the exact numbers)."""
    config = BacktestConfig(
        **{**COSTS, "fraction": 0.9}, sizing="correlation", vol_target=0.3, vol_window=60, cluster_cap=0.5
    )
    replay(trained_world, "ot-correlation", config)
    store = OpsStore.open(trained_world.settings.effective_database_url)
    session_id = store.session("ot-correlation").id
    orders = [o for o in store.orders(session_id) if o.intent == "enter_long"]
    points = store.frame(EquityPoint, session_id)
    equity = dict(zip(points["ts"], points["equity"], strict=True))
    store.close()
    shares = [o.quote_amount / equity[o.decided_ts] for o in orders]
    assert len(shares) >= 5 and all(0.0 < s <= 0.5 + 1e-9 for s in shares)


def test_limit_entries_with_stops_match_the_backtest(trained_world: World) -> None:
    config = BacktestConfig(
        **COSTS,
        entry_order="limit",
        limit_offset=0.005,
        limit_ttl_bars=2,
        maker_fee_rate=0.0002,
        stop_loss=0.03,
        take_profit=0.05,
    )
    _, reasons = replay(trained_world, "ot-limit", config, bars=500)
    store = OpsStore.open(trained_world.settings.effective_database_url)
    statuses = Counter((o.intent, o.status) for o in store.orders(store.session("ot-limit").id))
    store.close()
    assert statuses["enter_long", "expired"] >= 1 and statuses["enter_long", "filled"] >= 5
    assert statuses["stop_loss", "canceled"] >= 1  # the legs of an entry that expired, or of a sibling's exit


@pytest.fixture(scope="module")
def perp_world(trained_world: World, tmp_path_factory: pytest.TempPathFactory) -> World:
    """The sample's candles stored as perpetuals and the champion with a rule that shorts."""
    root = tmp_path_factory.mktemp("perp-world")
    settings = make_settings(root)
    lake = CandleLake(settings.lake_dir, quarantine_root=settings.quarantine_dir)
    candles = trained_world.candles.with_columns(symbol=pl.col("symbol") + "-PERP")
    for symbol in sorted(candles["symbol"].unique()):
        one = candles.filter(pl.col("symbol") == symbol).select("ts", "open", "high", "low", "close", "volume")
        lake.write(SeriesKey("coinbase", symbol, "4h"), one)
    _, model = ModelRegistry(trained_world.settings.registry_dir).load("sma_cross")
    shorting = dataclasses.replace(
        model,
        strategy=SmaCross(fast=10, slow=40, rule=ThresholdRule(allow_short=True)),
        universe=Universe(exchange="coinbase", timeframe="4h", symbols=tuple(candles["symbol"].unique())),
    )
    registry = ModelRegistry(settings.registry_dir)
    artifact = registry.register(shorting.save(root / "model"))
    registry.promote("sma_cross", artifact, lineage=Lineage(run_id="test"))
    return World(root, settings, candles.sort("symbol", "ts"), artifact)


def test_shorts_and_reversals_on_perpetuals_match_the_backtest(perp_world: World) -> None:
    config = BacktestConfig(**COSTS, stop_loss=0.05, trailing_stop=0.08)
    _, reasons = replay(perp_world, "ot-shorts", config)
    store = OpsStore.open(perp_world.settings.effective_database_url)
    session = store.session("ot-shorts")
    intents = {o.id: o.intent for o in store.orders(session.id)}
    fills = [(f.ts, f.symbol, intents[f.order_id]) for f in store.fills(session.id)]
    store.close()
    kinds = Counter(kind for _, _, kind in fills)
    assert kinds["enter_short"] >= 3 and kinds["enter_long"] >= 3
    exits = {(ts, symbol) for ts, symbol, kind in fills if kind.startswith("exit_")}
    assert any((ts, symbol) in exits for ts, symbol, kind in fills if kind.startswith("enter_"))  # a reversal
    assert reasons["stop_loss"] >= 1 and reasons["trailing_stop"] >= 1


def test_all_stops_together_match_the_backtest_on_postgresql(trained_world: World, pg_url: str) -> None:
    world = dataclasses.replace(trained_world, settings=make_settings(trained_world.root, DATABASE_URL=pg_url))
    config = BacktestConfig(
        **COSTS, stop_loss=0.04, atr_stop=2.0, trailing_stop=0.05, atr_trailing=3.0, take_profit=0.06
    )
    _, reasons = replay(world, "ot-all-stops", config)
    assert {"stop_loss", "trailing_stop", "take_profit"} <= set(reasons)


# ------------------------------------------------------------------ what the engine refuses
def test_a_rule_that_shorts_is_refused_on_spot_symbols_naming_the_fix(trained_world: World, tmp_path: Path) -> None:
    settings = make_settings(trained_world.root, DATABASE_URL=f"sqlite:///{tmp_path / 'ops.db'}")
    store = OpsStore.open(settings.effective_database_url)
    registry = ModelRegistry(settings.registry_dir)
    start = int(trained_world.candles["ts"].max())
    session = open_session(store, registry, SessionConfig(name="spot-shorts", symbols=SYMBOLS, start=start))
    backtest = backtest_config(session)
    slot = ModelSlot(registry, strategy=SmaCross(rule=ThresholdRule(allow_short=True)))
    with pytest.raises(ConfigError, match=r"spot: shorts need a derivative market.*allow_short=False"):
        LiveEngine(
            store=store,
            session=session,
            broker=make_broker(settings, "paper", exchange="coinbase", backtest=backtest),
            bus=make_bus(None),
            slot=slot,
            backtest=backtest,
            config=EngineConfig(publish=False),
        )


def test_venue_sessions_take_every_order_rule_but_split_cash() -> None:
    check_live_config(BacktestConfig(stop_loss=0.05, entry_order="limit"), paper=True)
    check_live_config(BacktestConfig(sizing="vol_target", vol_target=0.5), paper=False)  # sizing is the engine's
    check_live_config(BacktestConfig(stop_loss=0.05, trailing_stop=0.02, take_profit=0.1), paper=False)  # placed
    check_live_config(BacktestConfig(stop_loss=0.05, entry_order="limit"), paper=False)  # live.order_manager rule 6
    with pytest.raises(ConfigError, match="set cash_sharing=True"):
        check_live_config(BacktestConfig(cash_sharing=False))


def test_the_window_must_hold_the_sizing_and_atr_warm_ups() -> None:
    strategy = SmaCross(fast=10, slow=40)  # its decision reads 375 bars (its features' warm-up)
    vol = BacktestConfig(sizing="vol_target", vol_target=0.5, vol_window=400)
    check_window(strategy, 401, backtest=vol)
    with pytest.raises(ConfigError, match=r"vol_window=400 returns of 401 bars.*--window-bars 401"):
        check_window(strategy, 400, backtest=vol)
    with pytest.raises(ConfigError, match=r"atr_window=450 warm-up of 451"):
        check_window(strategy, 450, backtest=BacktestConfig(atr_trailing=2.0, atr_window=450))
    check_window(strategy, 400, backtest=BacktestConfig(atr_trailing=2.0, atr_window=14))
