"""Freeze, unfreeze and revert a session's threshold adaptation through the real HTTP stack,
with a paper session running on the API's PostgreSQL: a freeze stops adjustments from the next
bar, an unfreeze lets them go on, a revert puts the model's own threshold back and restarts the
adaptation from it; each request audited with its actor; who may do what."""

from __future__ import annotations

import asyncio

import polars as pl
import pytest

from live.runner import SessionConfig, build_engine, replay_feed
from tests.api.conftest import Api
from tests.api.test_thresholds_api import _session, api_world  # noqa: F401  (shared fixture)
from tests.live.conftest import SYMBOLS, World, trained_world  # noqa: F401  (shared fixture)
from tests.live.test_adaptation import CONFIG, stored_replay
from tradeloop.identity import Role
from tradeloop.ops import TradingSession
from tradeloop.registry import ModelRegistry


def test_freeze_unfreeze_and_revert_a_running_adaptation(api: Api, api_world: World) -> None:
    tom = api.user("tom", Role.TRADER)
    api.user("vera", Role.VIEWER)
    owner, viewer = api.login("tom"), api.login("vera")
    bars = api_world.candles.filter(pl.col("symbol") == SYMBOLS[0])["ts"]
    config = SessionConfig(name="adapt-api", start=int(bars[-1000]), adapt_thresholds=CONFIG)
    engine, feed = build_engine(api_world.settings, config), replay_feed(api_world.settings, config)
    sid = engine.session.id
    with api.ctx.store.transaction() as db:
        db.get(TradingSession, sid).owner_id = tom
    path = f"/sessions/{sid}/thresholds"
    reason = {"reason": "regime change: hold it"}

    asyncio.run(engine.run(feed, max_bars=90))
    listed = api.client.get(path, headers=owner).json()
    assert listed["adapting"] is True and listed["frozen"] is False
    assert any(r["source"] == "online" for r in listed["items"])  # it adapted before the freeze
    assert api.client.post(f"{path}/freeze", json=reason, headers=viewer).status_code == 403
    assert api.client.post(f"{path}/unfreeze", json=reason, headers=owner).status_code == 409  # not frozen
    frozen = api.client.post(f"{path}/freeze", json=reason, headers=owner)
    assert frozen.status_code == 200 and frozen.json()["source"] == "freeze"
    assert api.client.post(f"{path}/freeze", json=reason, headers=owner).status_code == 409  # frozen already
    frozen_after = engine.session.last_bar_ts
    asyncio.run(engine.run(feed, max_bars=40))
    thawed_after = engine.session.last_bar_ts
    assert api.client.post(f"{path}/unfreeze", json={"reason": "looked: fine"}, headers=owner).status_code == 200
    asyncio.run(engine.run(feed, max_bars=70))
    reverted_after = engine.session.last_bar_ts
    reverted = api.client.post(f"{path}/revert", json={"reason": "back to the model"}, headers=owner)
    assert reverted.status_code == 200, reverted.text
    asyncio.run(engine.run(feed, max_bars=20))

    store = engine.store
    rows = store.thresholds(sid)
    online = [r for r in rows if r.source == "online"]
    learned = [e.detail["bar_ts"] for e in store.audit_log(sid, events=("threshold_adapted",))]
    assert [ts for ts in learned if ts <= frozen_after]  # it learned before the freeze
    assert not [ts for ts in learned if frozen_after < ts <= thawed_after]  # frozen: nothing learned, no move
    assert not [r for r in online if frozen_after < r.bar_ts <= thawed_after]
    assert [ts for ts in learned if ts > thawed_after]  # unfrozen: it learns again
    _, model = ModelRegistry(api_world.settings.registry_dir).load("sma_cross")
    own = model.estimator.threshold_
    [back] = [r for r in rows if r.source == "model" and r.bar_ts is not None and r.bar_ts > reverted_after]
    assert back.threshold == pytest.approx(own) and "reverted" in back.reason
    actions = [
        (e.detail["bar_ts"], e.detail["action"], e.detail["threshold"])
        for e in store.audit_log(sid, events=("threshold_adaptation",))
    ]
    step = 4 * 3_600_000
    assert actions == [
        (int(bars[-1000]), "start", pytest.approx(own)),
        (frozen_after + step, "hold", None),
        (thawed_after + step, "release", None),
        (reverted_after + step, "start", pytest.approx(own)),
    ]
    _, replayed = stored_replay(store, sid, CONFIG)
    assert [(r.bar_ts, r.threshold) for r in online] == [(a.bar_ts, a.new) for a in replayed if a.moved]
    audits = {
        e: [(a.actor, a.detail) for a in store.audit_log(sid, events=(e,))]
        for e in ("threshold_freeze", "threshold_unfreeze", "threshold_revert")
    }
    assert [a for a, _ in audits["threshold_freeze"]] == ["tom"] and audits["threshold_freeze"][0][1][
        "reason"
    ] == reason["reason"]
    assert [a for a, _ in audits["threshold_unfreeze"]] == ["tom"]
    [(actor, detail)] = audits["threshold_revert"]
    last_online = [r for r in online if r.bar_ts <= reverted_after][-1]
    assert actor == "tom" and detail["old_source"] == "online" and detail["old"] == last_online.threshold
    assert detail["new"] == pytest.approx(own)
    store.close()


def test_freeze_is_refused_for_a_session_that_does_not_adapt(api: Api) -> None:
    tom = api.user("tom", Role.TRADER)
    sid = _session(api, owner=tom)
    answer = api.client.post(f"/sessions/{sid}/thresholds/freeze", json={"reason": "hold"}, headers=api.login("tom"))
    assert answer.status_code == 409 and "does not adapt" in answer.json()["detail"]
    listed = api.client.get(f"/sessions/{sid}/thresholds", headers=api.login("tom")).json()
    assert (listed["adapting"], listed["frozen"]) == (False, False)
