"""Champion and challengers, live (``live.shadow``, ``tradeloop.challengers``): a challenger run
in shadow beside the champion on replayed candles fills, bar for bar, as a backtest of that
challenger over the same bars, with paired returns stored per bar; a challenger whose live
evidence passes the sequential test is recommended by the engine (never promoted by it: the
champion is global), an administrator promotes a recommended one only, through the registry
with lineage saying the evidence was live; one whose evidence does not pass, or a session
trading in-sample bars, leaves it in shadow; a challenger that raises is retired, the champion
trades on."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import sqlalchemy as sa

from live.runner import SessionConfig, build_engine, open_session, replay_feed, run_session
from live.shadow import ShadowBook, ShadowStage
from tests.live.conftest import (
    SYMBOLS,
    World,
    assert_matches_backtest,
    make_settings,
    model_backtest,
    shifted_challenger,
    trade_fills,
)
from tradeloop.backtest import BacktestConfig
from tradeloop.challengers import SequentialConfig
from tradeloop.challengers.evidence import ChallengerStore, PairedBar
from tradeloop.challengers.promotion import promote_from_live, recommend_from_live
from tradeloop.errors import ModelError, PromotionRefusedError
from tradeloop.ops import EquityPoint, OpsStore, TradingSession
from tradeloop.ops.challenger_models import ChallengerRow
from tradeloop.registry import Lineage, ModelRegistry

BARS, WINDOW = 600, 400


@pytest.fixture(params=["sqlite", "postgresql"])
def shadow_world(request: pytest.FixtureRequest, own_world: World) -> World:
    if request.param == "sqlite":
        return own_world
    return replace(own_world, settings=make_settings(own_world.root, DATABASE_URL=request.getfixturevalue("pg_url")))


def test_a_shadow_challenger_fills_as_its_backtest_and_every_bar_pairs_the_two_returns(
    shadow_world: World, tmp_path: Path
) -> None:
    world = shadow_world
    artifact, model = shifted_challenger(world, tmp_path, shift=-0.01)
    start = int(world.candles.filter(pl.col("symbol") == SYMBOLS[0])["ts"][-BARS])
    config = SessionConfig(name="shadow", start=start, window_bars=WINDOW, fraction=0.5)
    store = OpsStore.open(world.settings.effective_database_url)
    session = open_session(store, ModelRegistry(world.settings.registry_dir), config, first_bar_ms=start)
    ChallengerStore(store).add(session, artifact[:10], registry=ModelRegistry(world.settings.registry_dir))

    engine = asyncio.run(run_session(world.settings, config))

    book = engine.shadow.books[artifact]  # still in shadow: its evidence did not promote it
    expected = model_backtest(world, model, window=WINDOW, start=start, config=BacktestConfig(**session.config))
    fills = sorted((f.ts, f.instrument.symbol, f.side.value, f.quantity, f.price) for f in book.fills)
    wanted = [f[:5] for f in trade_fills(expected.trades)]
    assert len(wanted) >= 10, "too few trades for a meaningful parity check"
    assert [f[:3] for f in fills] == [w[:3] for w in wanted]
    np.testing.assert_allclose([f[3] for f in fills], [w[3] for w in wanted], rtol=1e-9)
    np.testing.assert_allclose([f[4] for f in fills], [w[4] for w in wanted], rtol=1e-12)
    champion_fills = len(store.fills(session.id))
    assert champion_fills != len(fills)  # the two really decided differently

    bars = ChallengerStore(store).returns(session.id, artifact)
    assert len(bars) == engine.bars == world.candles.filter(pl.col("ts") >= start)["ts"].n_unique()
    curve = dict(expected.equity.select("ts", "equity").rows())
    np.testing.assert_allclose([b.equity for b in bars], [curve[b.ts] for b in bars], rtol=1e-9)
    shadow = np.array([b.equity for b in bars])
    np.testing.assert_allclose([b.challenger for b in bars][1:], shadow[1:] / shadow[:-1] - 1, atol=1e-12)
    equity = store.frame(EquityPoint, session.id).sort("ts")
    marks = dict(equity.select("ts", "equity").rows())
    champion = np.array([marks[b.ts] for b in bars])
    np.testing.assert_allclose([b.champion for b in bars][1:], champion[1:] / champion[:-1] - 1, atol=1e-12)
    assert {b.champion_artifact for b in bars} == {world.champion}
    [standing] = ChallengerStore(store).standings(session.id, champion=world.champion)
    assert standing.test.bars == len(bars) and standing.status == "shadow"
    assert standing.test.decision in ("continue", "promote")  # 600 bars: past min_bars
    store.close()


def _evidence(
    store: OpsStore, session_id: int, artifact: str, *, edge: float, against: str, bars: int = 300, first: int = 0
) -> None:
    rng = np.random.default_rng(5)
    champion = rng.normal(1e-4, 0.01, bars)
    challenger = champion + rng.normal(edge, 0.004, bars)
    with store.transaction() as db:
        ChallengerStore.record(
            db,
            session_id,
            [
                PairedBar(artifact=artifact, ts=1_700_000_000_000 + (first + i) * 14_400_000, champion=float(a),
                          challenger=float(b), equity=1.0, orders=0, champion_artifact=against)
                for i, (a, b) in enumerate(zip(champion, challenger, strict=True))
            ],
        )  # fmt: skip


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_the_engine_only_recommends_and_an_admin_promotes_a_recommended_challenger_with_live_lineage(
    backend: str, own_world: World, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = f"sqlite:///{tmp_path / 'ops.db'}" if backend == "sqlite" else request.getfixturevalue("pg_url")
    store = OpsStore.open(url)
    registry = ModelRegistry(own_world.settings.registry_dir)
    start = int(own_world.candles["ts"].max())
    session = open_session(store, registry, SessionConfig(name=f"promo-{backend}", start=start), first_bar_ms=start)
    better, _ = shifted_challenger(own_world, tmp_path, shift=-0.02)
    level, _ = shifted_challenger(own_world, tmp_path, shift=0.02)
    evidence = ChallengerStore(store)
    for artifact in (better, level):
        evidence.add(session, artifact, registry=registry)
    _evidence(store, session.id, level, edge=0.0, against=own_world.champion)
    _evidence(store, session.id, better, edge=0.002, against=own_world.champion)
    test = SequentialConfig(min_bars=200)
    stage = ShadowStage(
        store=store, session=session, registry=registry, backtest=BacktestConfig(**session.config),
        window_bars=WINDOW, test=test,
    )  # fmt: skip
    stage._sync(10_000.0)
    assert set(stage.books) == {better, level}

    stage._judge()  # what the engine does every check_every_bars bars
    assert registry.champion("sma_cross").artifact == own_world.champion  # the engine never promotes
    rows = {r.artifact: r for r in evidence.rows(session.id)}
    assert rows[better].status == "recommended" and rows[level].status == "shadow"
    assert (
        rows[better].decision["bars"] == 300 and rows[better].decision["log_lr"] >= rows[better].decision["threshold"]
    )
    [recommended] = store.audit_log(session.id, events=("challenger_recommended",))
    assert recommended.detail["artifact"] == better and recommended.actor == "engine"
    stage._sync(10_000.0)
    assert set(stage.books) == {better, level}  # a recommended challenger stays in shadow

    with pytest.raises(PromotionRefusedError, match="is shadow, not recommended"):
        promote_from_live(store, registry, session, level, actor="admin:root", reason="looks good")
    assert registry.champion("sma_cross").artifact == own_world.champion

    promote_from_live(store, registry, session, better[:12], actor="admin:root", reason="live evidence")
    champion = registry.champion("sma_cross")
    assert champion.artifact == better
    assert champion.lineage.evidence == "live"
    assert champion.lineage.parameters["session"] == session.name
    assert champion.lineage.parameters["promoted_by"] == "admin:root"
    assert champion.lineage.parameters["note"] == "live evidence"
    gate = {c["name"]: c for c in champion.lineage.gate}
    assert gate["live_sequential_test"]["passed"] and gate["live_min_bars"]["value"] == 300
    assert champion.lineage.metrics["log_lr"] == pytest.approx(rows[better].decision["log_lr"])
    assert registry.manifest("sma_cross").previous[-1].artifact == own_world.champion  # the rollback target
    rows = {r.artifact: r for r in evidence.rows(session.id)}
    assert rows[better].status == "promoted" and rows[level].status == "shadow"
    [audit] = store.audit_log(session.id, events=("challenger_promoted",))
    assert audit.detail["artifact"] == better and audit.actor == "admin:root"
    with pytest.raises(PromotionRefusedError, match="is promoted, not recommended"):
        promote_from_live(store, registry, session, better, actor="admin:root", reason="again")
    store.close()


def test_a_session_trading_in_sample_bars_never_recommends(own_world: World, tmp_path: Path) -> None:
    store = OpsStore.open(own_world.settings.effective_database_url)
    registry = ModelRegistry(own_world.settings.registry_dir)
    start = int(own_world.candles["ts"].max())
    session = open_session(store, registry, SessionConfig(name="in-sample", start=start), first_bar_ms=start)
    with store.transaction() as db:
        db.get(TradingSession, session.id).in_sample = True
    session = store.session("in-sample")
    better, _ = shifted_challenger(own_world, tmp_path, shift=-0.02)
    ChallengerStore(store).add(session, better, registry=registry)
    _evidence(store, session.id, better, edge=0.002, against=own_world.champion)
    test = SequentialConfig(min_bars=200)
    stage = ShadowStage(
        store=store, session=session, registry=registry, backtest=BacktestConfig(**session.config),
        window_bars=WINDOW, test=test,
    )  # fmt: skip
    stage._sync(10_000.0)
    stage._judge()
    verdict = recommend_from_live(store, session, better, champion=own_world.champion, config=test)
    assert verdict.report.passed and not verdict.recommended and "in-sample" in (verdict.why_not or "")
    [row] = ChallengerStore(store).rows(session.id)
    assert row.status == "shadow" and not store.audit_log(session.id, events=("challenger_recommended",))
    with pytest.raises(PromotionRefusedError, match="not recommended"):
        promote_from_live(store, registry, session, better, actor="admin:root", reason="in-sample")
    assert registry.champion("sma_cross").artifact == own_world.champion
    store.close()


def test_a_challenger_that_raises_is_retired_and_the_champion_trades_on(own_world: World, tmp_path: Path) -> None:
    world = own_world
    artifact, _ = shifted_challenger(world, tmp_path, shift=-0.01)
    start = int(world.candles.filter(pl.col("symbol") == SYMBOLS[0])["ts"][-BARS])
    config = SessionConfig(name="failing", start=start, window_bars=WINDOW, fraction=0.5)
    store = OpsStore.open(world.settings.effective_database_url)
    session = open_session(store, ModelRegistry(world.settings.registry_dir), config, first_bar_ms=start)
    ChallengerStore(store).add(session, artifact, registry=ModelRegistry(world.settings.registry_dir))
    calls = []

    def broken(self: ShadowBook, window: pl.DataFrame, ts: int) -> list[tuple[str, int]]:
        calls.append(ts)
        if len(calls) == 5:
            raise RuntimeError("challenger model exploded")
        return original(self, window, ts)

    original = ShadowBook._signals
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ShadowBook, "_signals", broken)
        engine = asyncio.run(run_session(world.settings, config))

    assert engine.bars == world.candles.filter(pl.col("ts") >= start)["ts"].n_unique()  # every bar, not stopped
    assert len(calls) == 5 and artifact not in engine.shadow.books
    assert_matches_backtest(world, "failing", start=start)  # the champion traded every bar as its backtest
    [row] = ChallengerStore(store).rows(session.id)
    assert row.status == "retired"
    [audit] = store.audit_log(session.id, events=("challenger_retired",))
    assert audit.detail["artifact"] == artifact and "challenger model exploded" in audit.detail["error"]
    assert audit.detail["bar_ts"] == calls[-1]
    assert len(ChallengerStore(store).returns(session.id, artifact)) == 4  # the bars before it failed
    store.close()


def test_bars_where_the_champion_did_not_decide_pair_nothing(own_world: World, tmp_path: Path) -> None:
    world = own_world
    artifact, _ = shifted_challenger(world, tmp_path, shift=-0.01)
    start = int(world.candles.filter(pl.col("symbol") == SYMBOLS[0])["ts"][-BARS])
    config = SessionConfig(name="paused", start=start, window_bars=WINDOW, fraction=0.5)
    engine = build_engine(world.settings, config)
    store, session = engine.store, engine.session
    ChallengerStore(store).add(session, artifact, registry=ModelRegistry(world.settings.registry_dir))
    asyncio.run(engine.run(replay_feed(world.settings, config), max_bars=30))
    store.set_status("paused", "paused")  # the champion holds: it decides nothing
    paused = build_engine(world.settings, config, store=store)
    asyncio.run(paused.run(replay_feed(world.settings, config), max_bars=20))
    store.set_status("paused", "running")
    resumed = build_engine(world.settings, config, store=store)
    asyncio.run(resumed.run(replay_feed(world.settings, config), max_bars=30))

    marked = store.frame(EquityPoint, session.id)["ts"].sort().to_list()
    assert len(marked) == 80  # every bar was marked, paused or not
    bars = ChallengerStore(store).returns(session.id, artifact)
    assert [b.ts for b in bars] == marked[:30] + marked[50:]
    assert {b.champion_artifact for b in bars} == {world.champion}
    store.close()


def test_only_evidence_against_the_champion_in_force_counts(own_world: World, tmp_path: Path) -> None:
    store = OpsStore.open(own_world.settings.effective_database_url)
    registry = ModelRegistry(own_world.settings.registry_dir)
    start = int(own_world.candles["ts"].max())
    session = open_session(store, registry, SessionConfig(name="switched", start=start), first_bar_ms=start)
    better, _ = shifted_challenger(own_world, tmp_path, shift=-0.02)
    other, _ = shifted_challenger(own_world, tmp_path, shift=0.03)
    evidence = ChallengerStore(store)
    evidence.add(session, better, registry=registry)
    _evidence(store, session.id, better, edge=0.002, against=own_world.champion)  # 300 bars: decisive
    _evidence(store, session.id, better, edge=0.0, against=other, bars=50, first=300)
    test = SequentialConfig(min_bars=200)
    [before] = evidence.standings(session.id, champion=own_world.champion, config=test)
    assert before.test.bars == 300 and before.test.decision == "promote"
    assert recommend_from_live(store, session, better, champion=own_world.champion, config=test).recommended

    registry.promote("sma_cross", other, lineage=Lineage(run_id="another champion"))  # by hand, say
    [after] = evidence.standings(session.id, champion=other, config=test)
    assert after.test.bars == 50 and after.test.decision == "collecting"  # the old champion's bars do not count
    assert after.first_ts == 1_700_000_000_000 + 300 * 14_400_000
    with pytest.raises(PromotionRefusedError, match="no longer applies"):
        promote_from_live(store, registry, session, better, actor="admin:root", reason="stale")
    assert registry.champion("sma_cross").artifact == other
    store.close()


def test_naming_a_challenger_while_another_caller_names_it_on_postgresql_names_it_once(
    own_world: World, tmp_path: Path, pg_url: str
) -> None:
    store = OpsStore.open(pg_url)
    registry = ModelRegistry(own_world.settings.registry_dir)
    start = int(own_world.candles["ts"].max())
    session = open_session(store, registry, SessionConfig(name="racing", start=start), first_bar_ms=start)
    artifact, _ = shifted_challenger(own_world, tmp_path, shift=-0.02)
    other = sa.create_engine(pg_url)
    pool = ThreadPoolExecutor(1)
    with other.begin() as first:  # the other caller: its insert not yet committed
        first.execute(
            sa.insert(ChallengerRow.__table__).values(
                session_id=session.id, artifact=artifact, status="shadow", added_at=datetime.now(UTC)
            )
        )
        second = pool.submit(ChallengerStore(store).add, session, artifact, registry=registry)
        with other.connect() as watch:  # the second insert waits on the first's unique key
            waiting = sa.text(
                "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                "WHERE NOT l.granted AND a.datname = current_database()"
            )
            for _ in range(600):
                if watch.execute(waiting).scalar() or second.done():
                    break
                time.sleep(0.05)
        assert not second.done()  # it is blocked: it read no row and inserted too
    assert second.result(timeout=60) == artifact  # not an IntegrityError: it found the row named
    pool.shutdown()
    [row] = ChallengerStore(store).rows(session.id)
    assert row.artifact == artifact and row.status == "shadow"
    assert len(store.audit_log(session.id, events=("challenger_added",))) == 1
    other.dispose()
    store.close()


def _named(world: World, tmp: Path, name: str):
    """A new session ``name`` with one challenger named: (artifact, its model, store, registry, session)."""
    artifact, model = shifted_challenger(world, tmp, shift=-0.01)
    start = int(world.candles.filter(pl.col("symbol") == SYMBOLS[0])["ts"][-BARS])
    store = OpsStore.open(world.settings.effective_database_url)
    registry = ModelRegistry(world.settings.registry_dir)
    config = SessionConfig(name=name, start=start, window_bars=WINDOW, fraction=0.5)
    session = open_session(store, registry, config, first_bar_ms=start)
    ChallengerStore(store).add(session, artifact, registry=registry)
    return artifact, model, store, registry, session


def test_a_challenger_that_never_loads_is_retired_in_the_database_and_a_passing_problem_is_not(
    own_world: World, tmp_path: Path
) -> None:
    artifact, model, store, registry, session = _named(own_world, tmp_path, "refused")

    def stage(window_bars: int = WINDOW) -> ShadowStage:
        return ShadowStage(
            store=store, session=session, registry=registry, backtest=BacktestConfig(**session.config),
            window_bars=window_bars,
        )  # fmt: skip

    def sync_with(error: Exception | None, *, window_bars: int = WINDOW) -> ShadowStage:
        shadow = stage(window_bars)
        with pytest.MonkeyPatch.context() as patch:
            if error is not None:
                patch.setattr(ModelRegistry, "model_of", lambda *a, **k: (_ for _ in ()).throw(error))
            shadow._sync(10_000.0)
        return shadow

    def status() -> str:
        [row] = ChallengerStore(store).rows(session.id)
        return row.status

    # passing problems: the registry unreadable now, an engine keeping too short a window
    assert artifact not in sync_with(OSError("disk gone")).books and status() == "shadow"
    assert artifact not in sync_with(None, window_bars=3).books and status() == "shadow"
    assert artifact in sync_with(None).books  # both gone: it runs
    # one that never will load (tampered, another strategy's): retired, audited with why
    assert artifact not in sync_with(ModelError("artifact abc: files do not match their hashes")).books
    assert status() == "retired"
    [audit] = store.audit_log(session.id, events=("challenger_retired",))
    assert audit.detail["artifact"] == artifact and "do not match their hashes" in audit.detail["refused"]
    loads: list[str] = []
    with pytest.MonkeyPatch.context() as patch:  # a restarted engine does not load it again
        patch.setattr(ModelRegistry, "model_of", lambda self, a, **_: loads.append(a) or model)
        stage()._sync(10_000.0)
    assert loads == [] and len(store.audit_log(session.id, events=("challenger_retired",))) == 1
    store.close()


def test_retiring_leaves_a_promoted_challenger_promoted(own_world: World, tmp_path: Path) -> None:
    artifact, _, store, _, session = _named(own_world, tmp_path, "raced")
    with store.transaction() as db:  # an administrator's promotion landed first
        db.execute(sa.update(ChallengerRow).where(ChallengerRow.artifact == artifact).values(status="promoted"))
    ChallengerStore(store).retire(session.id, artifact, actor="engine", detail={"refused": "late"})
    [row] = ChallengerStore(store).rows(session.id)
    assert row.status == "promoted" and not store.audit_log(session.id, events=("challenger_retired",))
    store.close()
