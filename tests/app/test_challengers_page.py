"""The Challengers page (streamlit's AppTest): a session's challenger against its champion with
the live test's statistic and the growth chart, and the page of a session without one."""

from __future__ import annotations

import copy
import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.app.conftest import dashboard_reads
from tests.app.test_dashboard import page, table
from tradeloop.challengers.evidence import ChallengerStore, PairedBar
from tradeloop.ops import OpsStore
from tradeloop.registry import ModelRegistry


@pytest.fixture
def challenger_env(dashboard_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    root = tmp_path / "data"
    shutil.copytree(dashboard_root, root)
    with dashboard_reads(root, monkeypatch):
        yield root


def test_the_page_shows_each_challenger_with_the_tests_statistic(challenger_env: Path) -> None:
    at = page("challengers")
    assert at.title[0].value == "Challengers"
    assert any("runs no challenger" in i.value for i in at.info)  # the demo session names none

    registry = ModelRegistry(challenger_env / "registry")
    _, model = registry.load("sma_cross")
    estimator = copy.copy(model.estimator)
    estimator.threshold_ += 0.01
    artifact = registry.register(dataclasses.replace(model, estimator=estimator).save(challenger_env / "other"))
    store = OpsStore.open(f"sqlite:///{challenger_env / 'tradeloop.db'}")
    session = store.session("paper-demo")
    ChallengerStore(store).add(session, artifact, registry=registry)
    champion_artifact = registry.champion("sma_cross").artifact
    rng = np.random.default_rng(2)
    champion = rng.normal(0.0, 0.01, 250)
    challenger = champion + rng.normal(-0.001, 0.004, 250)
    with store.transaction() as db:
        ChallengerStore.record(db, session.id, [
            PairedBar(artifact=artifact, ts=1_700_000_000_000 + i * 14_400_000, champion=float(a),
                      challenger=float(b), equity=1.0, orders=0, champion_artifact=champion_artifact)
            for i, (a, b) in enumerate(zip(champion, challenger, strict=True))
        ])  # fmt: skip
    store.close()

    estimator = copy.copy(model.estimator)
    estimator.threshold_ += 0.02
    sliced = registry.register(dataclasses.replace(model, estimator=estimator).save(challenger_env / "sliced"))
    store = OpsStore.open(f"sqlite:///{challenger_env / 'tradeloop.db'}")
    ChallengerStore(store).add(store.session("paper-demo"), sliced, registry=registry, capital_share=0.2)
    store.close()

    at = page("challengers")
    both = table(at, "artifact")
    assert sorted(both["artifact"].tolist()) == sorted([artifact[:12], sliced[:12]])
    capital = dict(zip(both["artifact"], both["capital"], strict=True))
    assert capital == {artifact[:12]: "shadow", sliced[:12]: "20% waiting"}  # no engine has funded it yet
    assert both["status"].tolist() == ["testing", "testing"]
    waiting = both[both["artifact"] == sliced[:12]]
    assert waiting["bars"].tolist() == [0] and waiting["difference"].isna().all()  # no figure before a paired bar
    shown = both[both["artifact"] == artifact[:12]].reset_index(drop=True)
    assert shown["bars"].tolist() == [250] and shown["decision"].tolist() == ["continue"]  # it lags: no promotion
    assert shown["min_bars"].tolist() == [200]  # named without options: the default minimum
    assert shown["difference"][0] == pytest.approx(100 * float(np.mean(challenger - champion)), rel=1e-9)
    assert shown["log_lr"][0] < shown["threshold"][0] == pytest.approx(np.log(20))
    assert [s.value for s in at.subheader] == ["One unit, compounded over the paired bars"]
    assert len(at.get("vega_lite_chart")) == 1  # the growth chart: champion and challenger
