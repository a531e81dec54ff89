"""Content-addressed artifacts, champions with lineage, atomic promotion and rollback."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from tradeloop.errors import ArtifactIntegrityError, ModelError
from tradeloop.registry import Lineage, ModelRegistry, tree_digest
from tradeloop.strategies import SmaCross
from tradeloop.thresholds import META_FEATURES, AdaptiveThreshold, BarrierConfig, ThresholdModel


def saved_model(path, seed: int):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(200, len(META_FEATURES)))
    y = (X[:, 0] + rng.normal(size=200) > 0).astype(int)
    est = AdaptiveThreshold().fit(X, y, returns=np.where(y == 1, 0.02, -0.01))
    return ThresholdModel(
        strategy=SmaCross(fast=5 + seed, slow=40),
        barriers=BarrierConfig(),
        estimator=est,
        trained_until=1_700_000_000_000 + seed,
    ).save(path)


@pytest.fixture
def registry(tmp_path) -> ModelRegistry:
    return ModelRegistry(tmp_path / "registry")


def test_artifacts_are_content_addressed_and_immutable(registry, tmp_path) -> None:
    folder = saved_model(tmp_path / "a", 1)
    digest = registry.register(folder)
    assert digest == tree_digest(folder) and registry.register(folder) == digest
    assert registry.store.list() == [digest]
    assert tree_digest(registry.store.verify(digest)) == digest


def test_promote_records_lineage_and_rollback_restores_the_previous(registry, tmp_path) -> None:
    first = registry.register(saved_model(tmp_path / "a", 1))
    second = registry.register(saved_model(tmp_path / "b", 2))
    registry.promote("sma_cross", first, lineage=Lineage(run_id="run-1", metrics={"oos": 1.0}))
    registry.promote("sma_cross", second[:10], lineage=Lineage(run_id="run-2"))
    entry, model = registry.load("sma_cross")
    assert entry.artifact == second and entry.lineage.run_id == "run-2" and model.strategy.fast == 7
    back = registry.rollback("sma_cross")
    assert back.artifact == first and back.lineage.run_id == "run-1"
    assert [e["event"] for e in registry.history("sma_cross")] == ["promote", "promote", "rollback"]
    with pytest.raises(ModelError, match="no earlier champion"):
        registry.rollback("sma_cross")


def test_a_reader_sees_every_promotion_another_process_makes(registry, tmp_path) -> None:
    """The engine's registry keeps the parsed manifest between bars: a promotion, a rollback or
    a damaged file elsewhere is what its next read returns."""
    engine = ModelRegistry(registry.root)
    first = registry.register(saved_model(tmp_path / "a", 1))
    second = registry.register(saved_model(tmp_path / "b", 2))
    assert engine.champion("sma_cross") is None
    registry.promote("sma_cross", first, lineage=Lineage(run_id="run-1"))
    assert engine.champion("sma_cross").artifact == first
    assert engine.champion("sma_cross") is engine.champion("sma_cross")  # unchanged file: parsed once
    registry.promote("sma_cross", second, lineage=Lineage(run_id="run-2"))
    assert engine.champion("sma_cross").artifact == second
    registry.rollback("sma_cross")
    assert engine.champion("sma_cross").artifact == first
    (registry.champions_dir / "sma_cross.json").write_text("{not json")
    with pytest.raises(ModelError, match="not valid JSON"):
        engine.champion("sma_cross")


def test_tampered_artifact_is_refused_and_the_champion_stays(registry, tmp_path) -> None:
    good = registry.register(saved_model(tmp_path / "a", 1))
    bad = registry.register(saved_model(tmp_path / "b", 2))
    registry.promote("sma_cross", good, lineage=Lineage())
    doc_path = registry.store.path(bad) / "model.json"
    doc = json.loads(doc_path.read_text())
    doc["learned"]["threshold_"] = 0.0001  # a one-number tamper
    doc_path.write_text(json.dumps(doc))
    with pytest.raises(ArtifactIntegrityError, match="corrupted or tampered"):
        registry.promote("sma_cross", bad, lineage=Lineage())
    assert registry.champion("sma_cross").artifact == good
    # tampering with the champion itself: loading refuses, nothing is changed
    (registry.store.path(good) / "model.json").write_text("{}")
    with pytest.raises(ArtifactIntegrityError):
        registry.load("sma_cross")
    assert registry.champion("sma_cross").artifact == good


def test_unknown_names_and_prefixes_are_clear_errors(registry, tmp_path) -> None:
    with pytest.raises(ModelError, match="no champion"):
        registry.load("sma_cross")
    with pytest.raises(ModelError, match="matches 0 stored artifacts"):
        registry.promote("sma_cross", "abcdef", lineage=Lineage())
    for prefix in ("", "abc", "../../x", "ABCDEF"):  # never "whichever artifact there is", never a path
        with pytest.raises(ModelError, match=re.escape(f"artifact={prefix!r} is not an artifact id")):
            registry.promote("sma_cross", prefix, lineage=Lineage())
    with pytest.raises(Exception, match="invalid"):
        registry.champion("../etc")
