"""Models through the real HTTP stack: champions with their lineage and history, promotion and
rollback as the registry itself reports them afterwards, and the registry's refusals."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import pytest

from tests.api.conftest import Api
from tests.registry.test_registry import saved_model
from tradeloop.identity import Role
from tradeloop.ops import OpsStore
from tradeloop.registry import Lineage, ModelRegistry
from tradeloop.strategies import STRATEGIES, Momentum
from tradeloop.thresholds import ThresholdModel


@pytest.fixture
def registry(api: Api, tmp_path: Path) -> tuple[ModelRegistry, str, str]:
    """The API's registry with two sma_cross artifacts, the first promoted (with NaN in its metrics)."""
    registry = ModelRegistry(api.ctx.settings.registry_dir)
    first = registry.register(saved_model(tmp_path / "a", 1))
    second = registry.register(saved_model(tmp_path / "b", 2))
    lineage = Lineage(
        git_commit="deadbeef", data_snapshot="ab" * 32, run_id="run-1",
        metrics={"oos_sharpe_per_bar": 0.0123, "oos_pbo": math.nan}, parameters={"fast": 6},
    )  # fmt: skip
    registry.promote("sma_cross", first, lineage=lineage)
    return registry, first, second


def test_promote_and_rollback_change_the_champion_the_registry_reports(api: Api, registry) -> None:
    reg, first, second = registry
    api.user("root", Role.ADMIN)
    admin = api.login("root")

    listed = api.client.get("/models", headers=admin)
    assert listed.status_code == 200
    strategies = {s["strategy"]: s for s in listed.json()["strategies"]}
    assert set(strategies) == set(STRATEGIES)
    sma = strategies["sma_cross"]
    assert sma["champion"]["artifact"] == first and sma["rollback_to"] is None
    assert {a["id"]: a["in_force"] for a in sma["artifacts"]} == {first: True, second: False}
    assert sma["champion"]["lineage"]["metrics"] == {"oos_sharpe_per_bar": 0.0123, "oos_pbo": None}  # NaN: null
    assert strategies["momentum"]["champion"] is None and strategies["momentum"]["artifacts"] == []

    body = {"artifact": second[:12], "reason": "challenger won the shadow week"}
    promoted = api.client.post("/models/sma_cross/promote", json=body, headers=admin)
    assert promoted.status_code == 200, promoted.text
    assert promoted.json()["artifact"] == second
    assert reg.champion("sma_cross").artifact == second  # the registry itself says so
    lineage = reg.champion("sma_cross").lineage
    assert lineage.parameters == {"note": "challenger won the shadow week", "promoted_by": "root"}

    shown = api.client.get("/models/sma_cross", headers=admin).json()
    assert shown["champion"]["artifact"] == second
    assert [c["artifact"] for c in shown["rollback_stack"]] == [first]
    assert shown["rollback_stack"][0]["lineage"]["run_id"] == "run-1"
    assert [(h["event"], h["artifact"]) for h in shown["history"]] == [("promote", second), ("promote", first)]

    rolled = api.client.post("/models/sma_cross/rollback", headers=admin)
    assert rolled.status_code == 200 and rolled.json()["artifact"] == first
    assert reg.champion("sma_cross").artifact == first
    assert reg.champion("sma_cross").lineage.git_commit == "deadbeef"  # the earlier entry, lineage and all
    again = api.client.post("/models/sma_cross/rollback", headers=admin)  # nothing earlier left
    assert again.status_code == 409 and "no earlier champion" in again.json()["detail"]
    assert reg.champion("sma_cross").artifact == first


def test_the_champion_shows_its_model_lineage_and_research_events(api: Api, registry) -> None:
    reg, first, _ = registry
    api.user("vera", Role.VIEWER)
    with api.ctx.store.transaction() as db:
        OpsStore.audit(
            db, "retrain_refused", detail={"strategy": "sma_cross", "reason": "pbo 0.61 > 0.5", "run_id": "r-9"}
        )
        OpsStore.audit(db, "retrain_failed", detail={"strategy": "momentum", "reason": "not ours", "run_id": "r-8"})
    shown = api.client.get("/models/sma_cross", headers=api.login("vera"))
    assert shown.status_code == 200
    body = shown.json()
    _, model = reg.load("sma_cross")
    assert body["model"]["threshold"] == pytest.approx(model.estimator.threshold_)
    assert body["model"]["p_star"] == pytest.approx(model.estimator.p_star_)
    assert body["model"]["trained_until"] == model.trained_until == 1_700_000_000_001
    assert body["model"]["strategy"]["name"] == "sma_cross" and body["model"]["strategy"]["fast"] == 6
    assert body["model"]["data_hash"] == "ab" * 32  # the lineage's snapshot: the model recorded none
    lineage = body["champion"]["lineage"]
    assert (lineage["git_commit"], lineage["run_id"], lineage["parameters"]) == ("deadbeef", "run-1", {"fast": 6})
    assert "went stale" in body["age"]  # trained until 2023-11, max age 14 days
    assert [(e["event"], e["run_id"], e["reason"]) for e in body["research"]] == [
        ("retrain_refused", "r-9", "pbo 0.61 > 0.5")
    ]
    assert api.client.get("/models/no_such_strategy", headers=api.login("vera")).status_code == 404


def test_a_viewer_or_trader_cannot_promote_or_roll_back(api: Api, registry) -> None:
    reg, first, second = registry
    api.user("vera", Role.VIEWER)
    api.user("tom", Role.TRADER)
    body = {"artifact": second, "reason": "trying my luck"}
    for name in ("vera", "tom"):
        headers = api.login(name)
        refused = api.client.post("/models/sma_cross/promote", json=body, headers=headers)
        assert refused.status_code == 403 and "admin" in refused.json()["detail"]
        assert api.client.post("/models/sma_cross/rollback", headers=headers).status_code == 403
    assert api.client.post("/models/sma_cross/promote", json=body).status_code == 401
    assert reg.champion("sma_cross").artifact == first
    assert api.client.get("/models").status_code == 401


def test_the_registry_refusals_are_problems_and_leave_the_champion_in_force(api: Api, registry, tmp_path: Path) -> None:
    reg, first, second = registry
    api.user("root", Role.ADMIN)
    admin = api.login("root")

    def promote(strategy: str, artifact: str):
        return api.client.post(
            f"/models/{strategy}/promote", json={"artifact": artifact, "reason": "test"}, headers=admin
        )

    momentum = replace(ThresholdModel.load(reg.store.verify(second)), strategy=Momentum())
    other = reg.register(momentum.save(tmp_path / "momentum"))
    wrong = promote("sma_cross", other)
    assert wrong.status_code == 409 and wrong.headers["content-type"] == "application/problem+json"
    assert "holds a momentum model, not sma_cross" in wrong.json()["detail"]

    missing = promote("sma_cross", "0123456789ab")
    assert missing.status_code == 404 and "GET /models" in missing.json()["detail"]
    malformed = promote("sma_cross", "../../etc")
    assert malformed.status_code == 422 and malformed.json()["errors"][0]["field"] == "body.artifact"
    assert promote("no_such_strategy", second).status_code == 404

    folder = reg.store.verify(second)
    victim = next(p for p in sorted(folder.rglob("*")) if p.is_file())
    victim.write_bytes(victim.read_bytes() + b"tampered")
    tampered = promote("sma_cross", second)
    assert tampered.status_code == 409 and "corrupted or tampered" in tampered.json()["detail"]

    assert reg.champion("sma_cross").artifact == first
    assert [e["artifact"] for e in reg.history("sma_cross")] == [first]
    assert promote("momentum", other).status_code == 200 and reg.champion("momentum").artifact == other
