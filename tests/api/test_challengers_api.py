"""A session's challengers through the real HTTP stack (PostgreSQL): naming one (a registered
artifact of the session's strategy, never its champion), who may, and the live sequential
test's standing as GET reads it from the paired returns the engine stores; promoting a
recommended challenger is an admin's (anything else, or anyone else, is refused)."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import numpy as np
import pytest

from tests.api.conftest import Api
from tests.live.conftest import World, trained_world  # noqa: F401  (shared fixture)
from tradeloop.challengers.evidence import ChallengerStore, PairedBar
from tradeloop.challengers.promotion import recommend_from_live
from tradeloop.identity import Role
from tradeloop.ops import TradingSession
from tradeloop.registry import Lineage, ModelRegistry


def _registry(api: Api, world: World, tmp_path: Path) -> tuple[str, str]:
    """The API's registry with the world's champion and another model of its strategy."""
    registry = ModelRegistry(api.ctx.settings.registry_dir)
    _, model = ModelRegistry(world.settings.registry_dir).load("sma_cross")
    champion = registry.register(model.save(tmp_path / "champion"))
    registry.promote("sma_cross", champion, lineage=Lineage(run_id="test"))
    estimator = copy.copy(model.estimator)
    estimator.threshold_ += 0.01
    other = dataclasses.replace(model, estimator=estimator)
    return champion, registry.register(other.save(tmp_path / "challenger"))


def _session(api: Api, name: str, *, owner: int) -> TradingSession:
    """A paper sma_cross session on coinbase BTC-USD and ETH-USD 4h, owned by ``owner``."""
    row = api.ctx.store.create_session(
        name=name, strategy="sma_cross", exchange="coinbase", timeframe="4h", symbols=["BTC-USD", "ETH-USD"],
        mode="paper", init_cash=10_000.0, config={},
    )  # fmt: skip
    with api.ctx.store.transaction() as db:
        db.get(TradingSession, row.id).owner_id = owner
    return row


def _record_an_edge(api: Api, session_id: int, *, challenger: str, champion: str) -> tuple[np.ndarray, np.ndarray]:
    """300 paired 4h bars where the challenger earns 0.2% a bar more (a clear edge), its shadow
    equity 10,000 + the bar's index; the champion's and the challenger's returns."""
    rng = np.random.default_rng(11)
    champ = rng.normal(0.0, 0.01, 300)
    chal = champ + rng.normal(0.002, 0.004, 300)
    with api.ctx.store.transaction() as db:
        ChallengerStore.record(db, session_id, [
            PairedBar(artifact=challenger, ts=1_700_000_000_000 + i * 14_400_000, champion=float(a),
                      challenger=float(b), equity=10_000.0 + i, orders=0, champion_artifact=champion)
            for i, (a, b) in enumerate(zip(champ, chal, strict=True))
        ])  # fmt: skip
    return champ, chal


def test_a_trader_names_a_challenger_and_reads_its_standing_others_cannot(
    api: Api, trained_world: World, tmp_path: Path
) -> None:
    champion, challenger = _registry(api, trained_world, tmp_path)
    row = _session(api, "ab", owner=api.user("tom", Role.TRADER))
    api.user("ivan", Role.TRADER)
    api.user("vera", Role.VIEWER)
    owner, other, viewer = (api.login(n) for n in ("tom", "ivan", "vera"))
    path = f"/sessions/{row.id}/challengers"

    refused = api.client.post(path, json={"artifact": champion[:12]}, headers=owner)
    assert refused.status_code == 422 and "is the champion" in refused.json()["detail"]
    assert api.client.post(path, json={"artifact": challenger[:12]}, headers=viewer).status_code == 403
    assert api.client.post(path, json={"artifact": challenger[:12]}, headers=other).status_code == 404
    made = api.client.post(path, json={"artifact": challenger[:12]}, headers=owner)
    assert made.status_code == 201, made.text
    assert made.json()["artifact"] == challenger and made.json()["status"] == "shadow"
    assert made.json()["bars"] == 0 and made.json()["decision"] == "collecting"
    [added] = api.ctx.store.audit_log(row.id, events=("challenger_added",))
    assert added.actor is not None and "tom" in added.actor and added.detail["artifact"] == challenger

    champ, chal = _record_an_edge(api, row.id, challenger=challenger, champion=champion)

    read = api.client.get(path, headers=owner)
    assert read.status_code == 200, read.text
    body = read.json()
    assert body["champion"] == champion and body["alpha"] == 0.05 and body["min_bars"] == 200
    [item] = body["items"]
    assert item["bars"] == 300 and item["shadow_equity"] == 10_299.0
    assert item["first_ts"] == 1_700_000_000_000 and item["last_ts"] == 1_700_000_000_000 + 299 * 14_400_000
    assert item["mean_difference"] == pytest.approx(float(np.mean(chal - champ)), rel=1e-9)
    assert item["champion_mean"] == pytest.approx(float(champ.mean()), rel=1e-9)
    assert item["z"] == pytest.approx(item["mean_difference"] / item["hac_se"], rel=1e-9)
    assert item["decision"] == "promote" and item["log_lr"] >= item["threshold"] == pytest.approx(np.log(20))
    assert api.client.get(path, headers=other).status_code == 404  # another trader's session: not there
    assert api.client.get(path, headers=viewer).status_code == 404

    # promotion is global (every session of the strategy): an admin's, of a recommended challenger only
    api.user("root", Role.ADMIN)
    admin = api.login("root")
    promote = f"{path}/{challenger[:12]}/promote"
    assert api.client.post(promote, json={"reason": "live evidence"}, headers=owner).status_code == 403
    early = api.client.post(promote, json={"reason": "live evidence"}, headers=admin)
    assert early.status_code == 409 and "is shadow, not recommended" in early.json()["detail"]
    registry = ModelRegistry(api.ctx.settings.registry_dir)
    assert registry.champion("sma_cross").artifact == champion
    with api.ctx.store.transaction() as db:
        session = db.get(TradingSession, row.id)
    assert recommend_from_live(
        api.ctx.store, session, challenger, champion=champion
    ).recommended  # what the engine does
    assert api.client.get(path, headers=owner).json()["items"][0]["status"] == "recommended"
    assert registry.champion("sma_cross").artifact == champion  # recommending changes no champion
    done = api.client.post(promote, json={"reason": "live evidence"}, headers=admin)
    assert done.status_code == 200, done.text
    assert done.json()["status"] == "promoted" and done.json()["artifact"] == challenger
    entry = registry.champion("sma_cross")
    assert entry.artifact == challenger and entry.lineage.evidence == "live"
    assert entry.lineage.parameters["note"] == "live evidence" and "root" in entry.lineage.parameters["promoted_by"]
    [audit] = api.ctx.store.audit_log(row.id, events=("challenger_promoted",))
    assert "root" in (audit.actor or "") and audit.detail["reason"] == "live evidence"


def test_a_challenger_named_with_its_own_test_options_is_judged_with_them(
    api: Api, trained_world: World, tmp_path: Path
) -> None:
    champion, challenger = _registry(api, trained_world, tmp_path)
    row = _session(api, "strict", owner=api.user("tom", Role.TRADER))
    owner = api.login("tom")
    path = f"/sessions/{row.id}/challengers"
    strict = {"artifact": challenger[:12], "test": {"alpha": 0.01, "min_bars": 400}}

    bad = api.client.post(path, json={"artifact": challenger[:12], "test": {"alpha": 0.7}}, headers=owner)
    assert bad.status_code == 422 and "alpha" in bad.text
    made = api.client.post(path, json=strict, headers=owner)
    assert made.status_code == 201, made.text
    assert made.json()["alpha"] == 0.01 and made.json()["min_bars"] == 400
    [added] = api.ctx.store.audit_log(row.id, events=("challenger_added",))
    assert added.detail["test"]["alpha"] == 0.01 and added.detail["test"]["min_bars"] == 400

    # the evidence that promotes under the defaults (the test above): 300 bars, a clear edge
    _record_an_edge(api, row.id, challenger=challenger, champion=champion)
    body = api.client.get(path, headers=owner).json()
    assert body["alpha"] == 0.05 and body["min_bars"] == 200  # the defaults, for challengers named without
    [item] = body["items"]
    assert item["alpha"] == 0.01 and item["min_bars"] == 400
    assert item["decision"] == "collecting" and item["threshold"] == pytest.approx(np.log(100))
    with api.ctx.store.transaction() as db:
        session = db.get(TradingSession, row.id)
    verdict = recommend_from_live(api.ctx.store, session, challenger, champion=champion)  # the engine's call
    assert not verdict.recommended and not verdict.report.passed

    # the options are fixed once named: the same ones or none are fine, others are refused
    assert api.client.post(path, json=strict, headers=owner).status_code == 201
    assert api.client.post(path, json={"artifact": challenger[:12]}, headers=owner).status_code == 201
    looser = api.client.post(path, json={"artifact": challenger[:12], "test": {"alpha": 0.05}}, headers=owner)
    assert looser.status_code == 422 and "fixed once named" in looser.json()["detail"]
    assert api.client.get(path, headers=owner).json()["items"][0]["min_bars"] == 400


def test_a_challenger_named_with_a_capital_share_shows_its_slice_and_live_derivatives_are_refused(
    api: Api, trained_world: World, tmp_path: Path
) -> None:
    _, challenger = _registry(api, trained_world, tmp_path)
    tom = api.user("tom", Role.TRADER)
    owner = api.login("tom")
    row = _session(api, "ab", owner=tom)
    path = f"/sessions/{row.id}/challengers"

    too_big = api.client.post(path, json={"artifact": challenger[:12], "capital_share": 0.6}, headers=owner)
    assert too_big.status_code == 422 and "capital_share" in too_big.text
    made = api.client.post(path, json={"artifact": challenger[:12], "capital_share": 0.2}, headers=owner)
    assert made.status_code == 201, made.text
    assert made.json()["capital_share"] == 0.2 and made.json()["slice_state"] is None  # funded by the engine's bar
    [added] = api.ctx.store.audit_log(row.id, events=("challenger_added",))
    assert added.detail["capital_share"] == 0.2
    other = api.client.post(path, json={"artifact": challenger[:12], "capital_share": 0.3}, headers=owner)
    assert other.status_code == 422 and "retire it and name it again" in other.json()["detail"]

    live, spot = (
        api.ctx.store.create_session(
            name=name, strategy="sma_cross", exchange="coinbase", timeframe="4h", symbols=[symbol], mode="live",
            init_cash=10_000.0, config={},
        )
        for name, symbol in (("ab-live", "BTC-USD-PERP"), ("ab-live-spot", "BTC-USD"))
    )  # fmt: skip
    with api.ctx.store.transaction() as db:
        db.get(TradingSession, live.id).owner_id = db.get(TradingSession, spot.id).owner_id = tom
    refused = api.client.post(
        f"/sessions/{live.id}/challengers", json={"artifact": challenger[:12], "capital_share": 0.2}, headers=owner
    )
    assert refused.status_code == 422 and "trades derivatives" in refused.json()["detail"]
    assert "without capital_share" in refused.json()["detail"]  # the fix
    shadow = api.client.post(f"/sessions/{live.id}/challengers", json={"artifact": challenger[:12]}, headers=owner)
    assert shadow.status_code == 201 and shadow.json()["capital_share"] is None
    split = api.client.post(  # one spot venue: a live split (live.slice_venue)
        f"/sessions/{spot.id}/challengers", json={"artifact": challenger[:12], "capital_share": 0.2}, headers=owner
    )
    assert split.status_code == 201 and split.json()["capital_share"] == 0.2


def _split_books(store, session_id: int, artifact: str) -> None:
    """The champion long 0.5 BTC-USD (marked 110), 8,000 cash; a slice of 2,000 that bought 1 ETH-USD at 50."""
    from tradeloop.ops import Fill, Order, Position
    from tradeloop.ops.challenger_models import ChallengerRow

    with store.transaction() as db:
        db.get(TradingSession, session_id).cash = 8_000.0
        db.add(Position(session_id=session_id, venue="coinbase", symbol="BTC-USD", quantity=0.5, entry_price=100.0,
                        entry_fee=0.05, entry_ts=0, last_price=110.0, realized_pnl=0.0))  # fmt: skip
        db.add(ChallengerRow(session_id=session_id, artifact=artifact, status="shadow", capital_share=0.2,
                             slice_cash=2_000.0, slice_ts=0, slice_state="open"))  # fmt: skip
        for cid, book, symbol, qty, price in (("tl1-e", None, "BTC-USD", 0.5, 100.0),
                                              ("tl1c1-e", artifact, "ETH-USD", 1.0, 50.0)):  # fmt: skip
            order = Order(session_id=session_id, client_order_id=cid, venue="paper", symbol=symbol, side="buy",
                          intent="enter_long", order_type="market", time_in_force="gtc", quote_amount=qty * price,
                          reduce_only=False, decided_ts=0, status="filled", capital_slice=book)  # fmt: skip
            db.add(order)
            db.flush()
            db.add(Fill(order_id=order.id, session_id=session_id, venue="paper", symbol=symbol, trade_id=cid,
                        side="buy", quantity=qty, price=price, fee=0.1, ts=1))  # fmt: skip


def test_positions_and_cash_read_every_book_of_a_split_session(sqlite_api: Api) -> None:
    api = sqlite_api
    row = _session(api, "split", owner=api.user("tom", Role.TRADER))
    _split_books(api.ctx.store, row.id, "c" * 64)
    tom = api.login("tom")
    held = api.client.get(f"/sessions/{row.id}/positions", headers=tom).json()
    assert [(p["book"], p["symbol"], p["quantity"]) for p in held] == [
        ("champion", "BTC-USD", 0.5), ("c" * 64, "ETH-USD", 1.0)
    ]  # fmt: skip
    read = api.client.get(f"/sessions/{row.id}", headers=tom).json()
    assert read["cash"] == 8_000.0 and read["whole_cash"] == pytest.approx(8_000.0 + 2_000.0 - 50.0 - 0.1)
