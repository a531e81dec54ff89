"""Thresholds in force through the real HTTP stack: the rows newest first, an override and its
revert (each audited with actor, old and new value and reason), who may do either, and a
running paper session (replay feed) that decides with the override from its next bar and with
its model's own after the revert."""

from __future__ import annotations

import asyncio
import copy
import shutil
import sys
from dataclasses import replace
from pathlib import Path

import polars as pl
import pytest

from live.runner import SessionConfig, build_engine, replay_feed
from tests.api.conftest import Api
from tests.live.conftest import SYMBOLS, World, make_settings, trained_world  # noqa: F401  (shared fixture)
from tradeloop.identity import Role
from tradeloop.ops import TradingSession
from tradeloop.registry import ModelRegistry
from tradeloop.thresholds.decide import decide

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "app"))  # the dashboard's modules, as it runs them

import session_data

WINDOW = 400  # the engine's window_bars (SessionConfig's default)


def _session(api: Api, *, owner: int | None, name: str = "s1") -> int:
    row = api.ctx.store.create_session(
        name=name, strategy="sma_cross", exchange="coinbase", timeframe="4h", symbols=["BTC-USD"], mode="paper",
        init_cash=10_000.0, config={},
    )  # fmt: skip
    with api.ctx.store.transaction() as db:
        db.get(TradingSession, row.id).owner_id = owner
    return row.id


def _audit(api: Api, session_id: int, event: str) -> list:
    return [e for e in api.ctx.store.audit_log(session_id, events=(event,))]


def test_override_and_revert_are_audited_and_only_a_trading_owner_or_an_admin_may(api: Api) -> None:
    tom = api.user("tom", Role.TRADER)
    api.user("ivan", Role.TRADER)
    api.user("vera", Role.VIEWER)
    api.user("root", Role.ADMIN)
    sid = _session(api, owner=tom)
    owner, other, viewer, admin = (api.login(n) for n in ("tom", "ivan", "vera", "root"))
    path = f"/sessions/{sid}/thresholds"
    body = {"threshold": 0.7, "reason": "news day: only the surest entries"}

    assert api.client.post(f"{path}/override", json=body, headers=viewer).status_code == 403  # a viewer never acts
    for attempt in (api.client.get(path, headers=other), api.client.post(f"{path}/override", json=body, headers=other)):
        assert attempt.status_code == 404 and f"session {sid} does not exist" in attempt.json()["detail"]
    short = api.client.post(f"{path}/override", json={"threshold": 0.7, "reason": "no"}, headers=owner)
    assert short.status_code == 422 and short.json()["errors"][0]["field"] == "body.reason"
    high = api.client.post(f"{path}/override", json={"threshold": 1.5, "reason": "too high"}, headers=owner)
    assert high.status_code == 422 and high.json()["errors"][0]["field"] == "body.threshold"
    assert api.client.get(path, headers=owner).json() == {
        "items": [], "override": None, "next_before_id": None, "adapting": False, "frozen": False,
    }  # fmt: skip

    made = api.client.post(f"{path}/override", json=body, headers=owner)
    assert made.status_code == 200, made.text
    assert (made.json()["source"], made.json()["threshold"], made.json()["bar_ts"]) == ("override", 0.7, None)
    again = api.client.post(f"{path}/override", json={"threshold": 0.6, "reason": "a little less"}, headers=admin)
    assert again.status_code == 200  # an admin may act on anyone's session
    listed = api.client.get(path, headers=owner).json()
    assert [(r["source"], r["threshold"]) for r in listed["items"]] == [("override", 0.6), ("override", 0.7)]
    assert listed["override"]["threshold"] == 0.6 and listed["override"]["reason"] == "a little less"

    reverted = api.client.post(f"{path}/revert", json={"reason": "news day over"}, headers=owner)
    assert reverted.status_code == 200 and reverted.json()["source"] == "revert"
    assert api.client.get(path, headers=owner).json()["override"] is None
    twice = api.client.post(f"{path}/revert", json={"reason": "once more"}, headers=owner)
    assert twice.status_code == 409 and "no threshold override in force" in twice.json()["detail"]

    overrides = [(e.actor, e.detail) for e in _audit(api, sid, "threshold_override")]
    assert overrides == [
        ("tom", {"old": None, "old_source": "model", "new": 0.7, "reason": "news day: only the surest entries"}),
        ("root", {"old": 0.7, "old_source": "override", "new": 0.6, "reason": "a little less"}),
    ]  # no champion in this registry: the model's own is unknown
    reverts = [(e.actor, e.detail) for e in _audit(api, sid, "threshold_revert")]
    assert reverts == [("tom", {"old": 0.6, "new": None, "new_source": "model", "reason": "news day over"})]
    requests = [
        (e.actor, e.detail["path"], e.detail["status"])
        for e in api.ctx.store.audit_log(events=("api_request",))
        if e.detail["path"].startswith("/sessions/")
    ]
    assert requests[:2] == [("vera", "/sessions/{session_id}/thresholds/override", 403)] + [
        ("ivan", "/sessions/{session_id}/thresholds/override", 404)
    ]  # refused attempts are recorded too
    assert [r[2] for r in requests].count(200) == 3 and requests[-1] == (
        "tom",
        "/sessions/{session_id}/thresholds/revert",
        409,
    )

    pages, before = [], None
    while True:
        page = api.client.get(path, params={"limit": 2, **({"before_id": before} if before else {})}, headers=owner)
        pages.append([r["id"] for r in page.json()["items"]])
        before = page.json()["next_before_id"]
        if before is None:
            break
    ids = [i for p in pages for i in p]
    assert len(pages) == 2 and ids == sorted(ids, reverse=True) and len(set(ids)) == 3

    api.ctx.store.set_status("s1", "stopped")
    stopped = api.client.post(f"{path}/override", json=body, headers=owner)
    assert stopped.status_code == 409 and "stopped" in stopped.json()["detail"]


@pytest.fixture
def api_world(api: Api, trained_world: World) -> World:
    """The trained world's lake and champion under the API's data folder, on the API's database."""
    root = api.ctx.settings.data_dir
    shutil.copytree(trained_world.settings.lake_dir, root / "lake")
    shutil.copytree(trained_world.settings.registry_dir, root / "registry")
    settings = make_settings(root, DATABASE_URL=api.ctx.settings.effective_database_url)
    return replace(trained_world, root=root, settings=settings)


def _signals(api: Api, session_id: int, headers: dict) -> dict[int, list[tuple[str, int]]]:
    """Every bar's signals through GET /sessions/{id}/signals, page by page."""
    bars, params = {}, {"limit": 100}
    while True:
        page = api.client.get(f"/sessions/{session_id}/signals", params=params, headers=headers).json()
        for bar in page["items"]:
            assert bar["source"] == "signals" and bar["ts"] not in bars
            bars[bar["ts"]] = [(s["symbol"], s["flags"]) for s in bar["signals"]]
        if page["next_since"] is None:
            return bars
        params["since"] = page["next_since"]


def _expected(world: World, model, *, start: int, lo: int, hi: int) -> dict[int, list[tuple[str, int]]]:
    """The research decision of ``model`` at each bar in ``lo..hi`` (the engine's window before ``start``)."""
    candles = world.candles
    first = candles.filter(pl.col("ts") < start).group_by("symbol").agg(pl.col("ts").sort().tail(WINDOW).first())
    decided = decide(candles.filter(pl.col("ts") >= first["ts"].min()), model, now_ms="bar")
    decided = decided.filter(pl.col("ts").is_between(lo, hi) & (pl.col("signal") != 0)).sort("ts", "symbol")
    out: dict[int, list[tuple[str, int]]] = {}
    for ts, symbol, flags in decided.select("ts", "symbol", "signal").iter_rows():
        out.setdefault(ts, []).append((symbol, flags))
    return out


def test_a_running_session_decides_with_the_override_from_its_next_bar_and_with_its_model_after_revert(
    api: Api, api_world: World
) -> None:
    api.user("root", Role.ADMIN)
    admin = api.login("root")
    bars = api_world.candles.filter(pl.col("symbol") == SYMBOLS[0])["ts"]
    start = int(bars[-500])
    config = SessionConfig(name="overridden", start=start)
    engine, feed = build_engine(api_world.settings, config), replay_feed(api_world.settings, config)
    _, model = ModelRegistry(api_world.settings.registry_dir).load("sma_cross")
    override = 0.0  # every entry with a probability passes; the model's own refuses some
    path = f"/sessions/{engine.session.id}/thresholds"
    asyncio.run(engine.run(feed, max_bars=150))
    overridden_after = engine.session.last_bar_ts
    made = api.client.post(f"{path}/override", json={"threshold": override, "reason": "take them all"}, headers=admin)
    assert made.status_code == 200
    asyncio.run(engine.run(feed, max_bars=200))
    reverted_after = engine.session.last_bar_ts
    assert api.client.post(f"{path}/revert", json={"reason": "enough"}, headers=admin).status_code == 200
    asyncio.run(engine.run(feed))
    last = engine.session.last_bar_ts
    assert last == int(bars[-1])

    loose = copy.copy(model.estimator)
    loose.threshold_ = override
    loose_model = replace(model, estimator=loose)
    own_before = _expected(api_world, model, start=start, lo=start, hi=overridden_after)
    with_override = _expected(api_world, loose_model, start=start, lo=overridden_after + 1, hi=reverted_after)
    own_during = _expected(api_world, model, start=start, lo=overridden_after + 1, hi=reverted_after)
    own_after = _expected(api_world, model, start=start, lo=reverted_after + 1, hi=last)
    assert with_override != own_during  # the override decides differently on these bars
    decided = _signals(api, engine.session.id, admin)
    assert decided == {**own_before, **with_override, **own_after}

    rows = api.client.get(path, headers=admin).json()["items"]
    threshold = model.estimator.threshold_
    assert [(r["source"], r["threshold"], r["bar_ts"]) for r in rows] == [
        ("model", pytest.approx(threshold), reverted_after + 4 * 3_600_000),  # its own again from the next bar
        ("revert", None, None),
        ("model", override, overridden_after + 4 * 3_600_000),  # the override from the bar after the request
        ("override", override, None),
        ("model", pytest.approx(threshold), start),
    ]
    assert "overridden to 0.0000 (take them all)" in rows[2]["reason"] and "overridden" not in rows[0]["reason"]
    [audited] = _audit(api, engine.session.id, "threshold_override")
    assert audited.actor == "root" and audited.detail["old"] == pytest.approx(threshold)
    [back] = _audit(api, engine.session.id, "threshold_revert")
    assert back.detail["old"] == override and back.detail["new"] == pytest.approx(threshold)
    # the dashboard's schedule of what decided is the engine's record, the requests left out
    schedule = session_data.in_force_schedule(engine.store, engine.session.id)
    assert schedule == tuple((r["bar_ts"], api_world.champion) for r in reversed(rows) if r["source"] == "model")
    engine.store.close()


def test_no_one_reads_another_users_session_signals(api: Api, tmp_path: Path) -> None:
    tom = api.user("tom", Role.TRADER)
    api.user("ivan", Role.VIEWER)
    sid = _session(api, owner=tom)
    assert api.client.get(f"/sessions/{sid}/signals", headers=api.login("ivan")).status_code == 404
    mine = api.client.get(f"/sessions/{sid}/signals", headers=api.login("tom"))
    assert mine.status_code == 200 and mine.json() == {"items": [], "held_from": None, "next_since": None}
