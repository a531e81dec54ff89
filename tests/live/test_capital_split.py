"""Capital slices (``live.slices``, ``tradeloop.challengers.slices``): a challenger named with a
``capital_share`` trades real paper orders with its share of the session's capital beside the
champion, each book filling bar for bar as a backtest of its model from its share of the cash;
the paired evidence is the books' real returns; a restart rebuilds each slice from its fills;
each slice's intents meet its own limits and, together, the session's; a retired slice is
flattened and its cash goes back to the champion."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from live.runner import SessionConfig, build_engine, open_session, run_session
from tests.live.conftest import SYMBOLS, World, make_settings, model_backtest, shifted_challenger, trade_fills
from tradeloop.backtest import BacktestConfig, BacktestResult
from tradeloop.challengers.evidence import ChallengerStore
from tradeloop.errors import ConfigError
from tradeloop.ops import EquityPoint, Fill, OpsStore, Order
from tradeloop.registry import ModelRegistry
from tradeloop.thresholds import ThresholdModel

BARS, WINDOW, SHARE, CASH = 600, 400, 0.2, 10_000.0


def _fills(store: OpsStore, session_id: int, book: str | None) -> list[tuple]:
    """The stored fills of one book (``book``: a challenger's artifact, None: the champion's)."""
    with store.transaction() as db:
        rows = db.query(Fill, Order).join(Order, Order.id == Fill.order_id).filter(Fill.session_id == session_id)
        return sorted((f.ts, f.symbol, f.side, f.quantity, f.price) for f, o in rows if o.capital_slice == book)


def _assert_fills(live: list[tuple], expected: BacktestResult) -> None:
    wanted = [f[:5] for f in trade_fills(expected.trades)]
    assert len(wanted) >= 10, "too few trades for a meaningful parity check"
    assert [f[:3] for f in live] == [w[:3] for w in wanted]
    np.testing.assert_allclose([f[3] for f in live], [w[3] for w in wanted], rtol=1e-9)
    np.testing.assert_allclose([f[4] for f in live], [w[4] for w in wanted], rtol=1e-12)


def _bars_to_a_position(world: World, model: ThresholdModel, *, config: SessionConfig, backtest: BacktestConfig) -> int:
    """How many bars from ``config.start`` the slice's backtest takes to hold a position (its
    third trade's entry bar included): a run of that many bars stops with the slice holding it."""
    result = model_backtest(world, model, window=WINDOW, start=config.start, config=backtest)
    entry = sorted(result.trades["entry_ts"])[2]
    bars = world.candles.filter(pl.col("ts") >= config.start)["ts"].unique().sort()
    return int((bars <= entry).sum())


def _split_session(world: World, tmp: Path, name: str) -> tuple[SessionConfig, OpsStore, object, str, ThresholdModel]:
    artifact, model = shifted_challenger(world, tmp, shift=-0.01)
    start = int(world.candles.filter(pl.col("symbol") == SYMBOLS[0])["ts"][-BARS])
    config = SessionConfig(name=name, start=start, window_bars=WINDOW, fraction=0.5, init_cash=CASH)
    store = OpsStore.open(world.settings.effective_database_url)
    registry = ModelRegistry(world.settings.registry_dir)
    session = open_session(store, registry, config, first_bar_ms=start)
    ChallengerStore(store).add(session, artifact[:10], registry=registry, capital_share=SHARE)
    return config, store, session, artifact, model


@pytest.mark.parametrize(("backend", "restart"), [("sqlite", False), ("sqlite", True), ("postgresql", True)])
def test_an_80_20_paper_split_trades_each_slice_as_its_own_backtest_on_its_share(
    own_world: World, tmp_path: Path, backend: str, restart: bool, request: pytest.FixtureRequest
) -> None:
    world = own_world
    if backend == "postgresql":
        world = replace(world, settings=make_settings(world.root, DATABASE_URL=request.getfixturevalue("pg_url")))
    config, store, session, artifact, model = _split_session(world, tmp_path, f"split-{backend}-{restart}")
    backtest = BacktestConfig(**session.config)
    restart_at = 0
    if not restart:
        engine = asyncio.run(run_session(world.settings, config))
    else:
        restart_at = _bars_to_a_position(
            world, model, config=config, backtest=backtest
        )  # a restart between bars: a new engine rebuilds each slice from the database
        first = asyncio.run(run_session(world.settings, config, max_bars=restart_at))
        before = first.slices.slices[artifact].portfolio
        held = {p.instrument: (p.quantity, p.entry_price) for p in before.positions()}
        assert held, "the restart should find the slice holding a position"
        fresh = build_engine(world.settings, config, store=store)  # as a restart finds the database
        fresh.slices.reload(fresh.session)
        rebuilt = fresh.slices.slices[artifact].portfolio
        assert {p.instrument: (p.quantity, p.entry_price) for p in rebuilt.positions()} == held
        assert rebuilt.cash == pytest.approx(before.cash, rel=1e-12)
        engine = asyncio.run(run_session(world.settings, config))

    assert artifact not in engine.shadow.books  # a slice is traded, not simulated
    [row] = [r for r in ChallengerStore(store).rows(session.id) if r.artifact == artifact]
    assert (row.slice_state, row.slice_ts) == ("open", config.start)
    assert row.slice_cash == pytest.approx(SHARE * CASH)  # funded at the first bar, the champion still flat

    # each book fills as its own model's backtest from its share of the cash: sizes come from 20% and 80%
    slice_bt = model_backtest(
        world, model, window=WINDOW, start=config.start, config=backtest.model_copy(update={"init_cash": SHARE * CASH})
    )
    champion_model = ModelRegistry(world.settings.registry_dir).load("sma_cross")[1]
    champ_bt = model_backtest(
        world,
        champion_model,
        window=WINDOW,
        start=config.start,
        config=backtest.model_copy(update={"init_cash": (1 - SHARE) * CASH}),
    )
    _assert_fills(_fills(store, session.id, artifact), slice_bt)
    _assert_fills(_fills(store, session.id, None), champ_bt)
    entries = [o for o in store.orders(session.id) if o.intent == "enter_long"]
    first_slice = min((o for o in entries if o.capital_slice == artifact), key=lambda o: o.decided_ts)
    first_champion = min((o for o in entries if o.capital_slice is None), key=lambda o: o.decided_ts)
    assert first_slice.client_order_id.startswith(f"tl{session.id}c{row.id}-")
    assert first_slice.quote_amount == pytest.approx(0.5 * SHARE * CASH)  # flat until its first entry
    assert first_champion.quote_amount == pytest.approx(0.5 * (1 - SHARE) * CASH)

    # the paired evidence is the two books' real returns, bar for bar
    bars = ChallengerStore(store).returns(session.id, artifact)
    replayed = world.candles.filter(pl.col("ts") >= config.start)["ts"].n_unique()
    assert len(bars) == replayed - 1 == engine.bars + restart_at - 1  # every bar after the funding one
    slice_curve = dict(slice_bt.equity.select("ts", "equity").rows())
    champ_curve = dict(champ_bt.equity.select("ts", "equity").rows())
    np.testing.assert_allclose([b.equity for b in bars], [slice_curve[b.ts] for b in bars], rtol=1e-9)
    ts = [config.start] + [b.ts for b in bars]
    slice_eq = np.array([slice_curve[t] for t in ts])
    champ_eq = np.array([champ_curve[t] for t in ts])
    np.testing.assert_allclose([b.challenger for b in bars], slice_eq[1:] / slice_eq[:-1] - 1, atol=1e-12)
    np.testing.assert_allclose([b.champion for b in bars], champ_eq[1:] / champ_eq[:-1] - 1, atol=1e-12)
    # the session's equity is both books'
    marks = dict(store.frame(EquityPoint, session.id).select("ts", "equity").rows())
    np.testing.assert_allclose([marks[t] for t in ts], slice_eq + champ_eq, rtol=1e-9)
    store.close()


def test_a_retired_slice_is_flattened_and_its_cash_returns_to_the_champion(own_world: World, tmp_path: Path) -> None:
    world = own_world
    config, store, session, artifact, model = _split_session(world, tmp_path, "split-retire")
    holding = _bars_to_a_position(world, model, config=config, backtest=BacktestConfig(**session.config))
    first = asyncio.run(run_session(world.settings, config, max_bars=holding))
    assert first.slices.slices[artifact].positions(), "the slice should hold a position when it is retired"
    ChallengerStore(store).retire(session.id, artifact, actor="test")
    registry = ModelRegistry(world.settings.registry_dir)
    with pytest.raises(ConfigError, match="still open after it was retired"):  # its positions are not flat yet
        ChallengerStore(store).add(session, artifact, registry=registry, capital_share=SHARE)
    engine = asyncio.run(run_session(world.settings, config, max_bars=15))  # resumes; the sync sees the retirement

    [row] = [r for r in ChallengerStore(store).rows(session.id) if r.artifact == artifact]
    assert (row.status, row.slice_state) == ("retired", "closed")
    assert artifact not in engine.slices.slices and not engine.slices.active
    events = [e.event for e in store.audit_log(session.id, events=("slice_funded", "slice_closing", "slice_closed"))]
    assert events == ["slice_funded", "slice_closing", "slice_closed"]
    flattens = [o for o in store.orders(session.id) if o.capital_slice == artifact and o.intent == "flatten"]
    assert flattens and all(o.status == "filled" and o.reduce_only for o in flattens)
    slice_fills = _fills(store, session.id, artifact)
    cash = row.slice_cash + sum((-1 if side == "buy" else 1) * q * p for _, _, side, q, p in slice_fills)
    fees = sum(f.fee for f in store.fills(session.id) if f.order_id in {o.id for o in store.orders(session.id)
                                                                         if o.capital_slice == artifact})  # fmt: skip
    [closed] = store.audit_log(session.id, events=("slice_closed",))
    assert closed.detail["cash"] == pytest.approx(cash - fees, rel=1e-12)
    # the champion's book holds the whole session again: its equity is the session's
    marks = store.frame(EquityPoint, session.id).sort("ts")
    assert marks["equity"][-1] == pytest.approx(engine.portfolio.equity(), rel=1e-12)
    ChallengerStore(store).add(session, artifact, registry=registry, capital_share=SHARE)  # closed: a new slice
    [again] = [r for r in ChallengerStore(store).rows(session.id) if r.artifact == artifact]
    assert (again.status, again.slice_state, again.slice_cash) == ("shadow", None, None)
    store.close()


def test_a_capital_share_is_refused_on_live_derivatives_or_several_venues_and_past_half_the_capital(
    own_world: World, tmp_path: Path
) -> None:
    world = own_world
    config, store, session, artifact, _ = _split_session(world, tmp_path, "split-limits")
    registry = ModelRegistry(world.settings.registry_dir)
    other, _ = shifted_challenger(world, tmp_path, shift=0.02)
    with pytest.raises(ConfigError, match="at most 0.5"):
        ChallengerStore(store).add(session, other, registry=registry, capital_share=0.35)
    session.mode = "live"  # the detached row, as a live session's reads: one spot venue splits (test_slice_venue)
    for symbols, refusal in ((["BTC/USDT:USDT"], "trades derivatives"), (["BTC-USD-PERP"], "trades derivatives"),
                             ([SYMBOLS[0], "okx:BTC-USDT"], "on venues other than")):  # fmt: skip
        session.symbols = symbols
        with pytest.raises(ConfigError, match=f"capital_share=0.1: live session .*{refusal}.*without capital_share"):
            ChallengerStore(store).add(session, other, registry=registry, capital_share=0.1)
    assert {r.artifact for r in ChallengerStore(store).rows(session.id)} == {artifact}
    store.close()
