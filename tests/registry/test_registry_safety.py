"""The registry never runs code from an artifact and never trusts a manifest's shape."""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import replace

import pytest

from tests.registry.test_registry import saved_model
from tests.thresholds.hostile import PAYLOADS, Payload, with_payload_inside
from tradeloop.errors import ModelError
from tradeloop.registry import Lineage, ModelRegistry, tree_digest
from tradeloop.strategies import Momentum
from tradeloop.thresholds import ThresholdModel


@pytest.fixture
def registry(tmp_path) -> ModelRegistry:
    return ModelRegistry(tmp_path / "registry")


def hostile_folder(tmp_path, payload_bytes: bytes):
    folder = saved_model(tmp_path / "hostile", 1)
    (folder / "classifier.skops").write_bytes(payload_bytes)
    return folder


@pytest.mark.parametrize("payload", PAYLOADS, ids=lambda p: p.name)
def test_register_refuses_a_classifier_file_that_would_run_code(registry, tmp_path, payload: Payload) -> None:
    marker = tmp_path / "pwned"
    folder = hostile_folder(tmp_path, payload.build(marker))
    with pytest.raises(ModelError, match=r"refusing to register .*outside the allow-list") as caught:
        registry.register(folder)
    assert all(repr(name) in str(caught.value) for name in payload.refused)
    assert registry.store.list() == [] and not marker.exists()


def test_register_refuses_a_payload_hidden_in_a_real_classifier(registry, tmp_path) -> None:
    marker = tmp_path / "pwned"
    folder = saved_model(tmp_path / "m", 1)
    path = folder / "classifier.skops"
    path.write_bytes(with_payload_inside(path.read_bytes(), marker))
    with pytest.raises(ModelError, match=re.escape("outside the allow-list: ['builtins.exec']")):
        registry.register(folder)
    assert registry.store.list() == [] and not marker.exists()


def test_a_hostile_artifact_written_straight_into_the_store_is_refused_on_load(registry, tmp_path) -> None:
    """A hostile writer can bypass register: put the files (correct hash) and edit the manifest."""
    good = registry.register(saved_model(tmp_path / "good", 1))
    registry.promote("sma_cross", good, lineage=Lineage())
    marker = tmp_path / "pwned"
    bad = registry.store.put(hostile_folder(tmp_path, PAYLOADS[0].build(marker)))
    assert tree_digest(registry.store.verify(bad)) == bad  # the hash check passes: it covers the crafted file
    with pytest.raises(ModelError, match="outside the allow-list"):
        registry.promote("sma_cross", bad, lineage=Lineage())
    manifest = registry.champions_dir / "sma_cross.json"
    doc = json.loads(manifest.read_text())
    doc["current"]["artifact"] = bad
    manifest.write_text(json.dumps(doc))
    with pytest.raises(ModelError, match=re.escape("outside the allow-list: ['builtins.exec']")):
        registry.load("sma_cross")
    assert not marker.exists()


def test_promote_refuses_a_model_of_another_strategy(registry, tmp_path) -> None:
    sma = registry.register(saved_model(tmp_path / "a", 1))
    model = ThresholdModel.load(saved_model(tmp_path / "b", 2))
    momentum = registry.register(replace(model, strategy=Momentum()).save(tmp_path / "momentum"))
    registry.promote("sma_cross", sma, lineage=Lineage())
    with pytest.raises(ModelError, match=f"artifact {momentum[:12]} holds a momentum model, not sma_cross"):
        registry.promote("sma_cross", momentum, lineage=Lineage())
    assert registry.champion("sma_cross").artifact == sma
    assert registry.promote("momentum", momentum, lineage=Lineage()).artifact == momentum
    with pytest.raises(ModelError, match="strategy 'nope' is unknown; promote for one of breakout"):
        registry.promote("nope", sma, lineage=Lineage())
    assert not (registry.champions_dir / "nope.json").exists()


def _good_manifest(registry, tmp_path) -> tuple[dict, str, str]:
    first = registry.register(saved_model(tmp_path / "a", 1))
    second = registry.register(saved_model(tmp_path / "b", 2))
    registry.promote("sma_cross", first, lineage=Lineage(run_id="one"))
    registry.promote("sma_cross", second, lineage=Lineage(run_id="two"))
    return json.loads((registry.champions_dir / "sma_cross.json").read_text()), first, second


BAD_MANIFESTS = [
    ("a list", lambda d: [d], r"\(document\) = \[.*Input should be a valid dictionary"),
    ("current is a string", lambda d: d | {"current": "abc"}, r"current = 'abc': Input should be a valid dictionary"),
    ("no current", lambda d: {"previous": d["previous"]}, r"current = missing: Field required"),
    (
        "no strategy",
        lambda d: d | {"current": {k: v for k, v in d["current"].items() if k != "strategy"}},
        r"current.strategy = missing",
    ),
    (
        "unknown strategy",
        lambda d: d | {"current": d["current"] | {"strategy": "nope"}},
        r"current.strategy = 'nope': Value error, unknown strategy 'nope'",
    ),
    (
        "another strategy",
        lambda d: d | {"current": d["current"] | {"strategy": "momentum"}},
        r"current.strategy = 'momentum' in the manifest of 'sma_cross'",
    ),
    (
        "empty artifact",
        lambda d: d | {"current": d["current"] | {"artifact": ""}},
        r"current.artifact = '': String should match pattern",
    ),
    (
        "artifact is a path",
        lambda d: d | {"current": d["current"] | {"artifact": "../../../etc"}},
        r"current.artifact = '../../../etc'",
    ),
    (
        "artifact is a number",
        lambda d: d | {"current": d["current"] | {"artifact": 7}},
        r"current.artifact = 7: Input should be a valid string",
    ),
    (
        "lineage of the wrong type",
        lambda d: d | {"previous": [d["previous"][0] | {"lineage": []}]},
        r"previous.0.lineage = \[\]",
    ),
    ("unknown key", lambda d: d | {"champion": "x"}, r"champion = 'x': Extra inputs are not permitted"),
]


@pytest.mark.parametrize(("case", "mutate", "message"), BAD_MANIFESTS, ids=[c[0] for c in BAD_MANIFESTS])
def test_a_malformed_manifest_is_a_clear_error(registry, tmp_path, case, mutate, message) -> None:
    doc, _, second = _good_manifest(registry, tmp_path)
    manifest = registry.champions_dir / "sma_cross.json"
    manifest.write_text(json.dumps(mutate(doc)))
    for read in (
        lambda: registry.champion("sma_cross"),
        lambda: registry.load("sma_cross"),
        lambda: registry.rollback("sma_cross"),
        lambda: registry.promote("sma_cross", second, lineage=Lineage()),
    ):
        with pytest.raises(ModelError, match=message) as caught:
            read()
        assert "sma_cross.json is malformed" in str(caught.value)
        assert "restore it from sma_cross.history.jsonl" in str(caught.value)
    assert json.loads(manifest.read_text()) == mutate(doc)  # a refused change changes nothing


def test_a_manifest_pointing_at_another_strategys_model_is_refused_on_load(registry, tmp_path) -> None:
    model = ThresholdModel.load(saved_model(tmp_path / "b", 2))
    momentum = registry.register(replace(model, strategy=Momentum()).save(tmp_path / "momentum"))
    registry.promote("momentum", momentum, lineage=Lineage())
    shutil.copy(registry.champions_dir / "momentum.json", registry.champions_dir / "sma_cross.json")
    doc = json.loads((registry.champions_dir / "sma_cross.json").read_text())
    doc["current"]["strategy"] = "sma_cross"  # edited by hand to look right
    (registry.champions_dir / "sma_cross.json").write_text(json.dumps(doc))
    with pytest.raises(ModelError, match="holds a momentum model, not sma_cross"):
        registry.load("sma_cross")


def test_a_malformed_history_line_is_named(registry, tmp_path) -> None:
    _good_manifest(registry, tmp_path)
    with open(registry.champions_dir / "sma_cross.history.jsonl", "a") as fh:
        fh.write('{"event": "explode", "artifact": "x", "at": "now"}\n')
    with pytest.raises(ModelError, match=r"history.jsonl line 3 is malformed: event = 'explode'"):
        registry.history("sma_cross")
