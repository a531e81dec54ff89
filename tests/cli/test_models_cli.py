"""``tradeloop models``: list, show (hash-verified), promote, rollback, and exit codes."""

from __future__ import annotations

import json
from pathlib import Path

from test_cli import tradeloop

from tests.registry.test_registry import saved_model
from tests.thresholds.hostile import PAYLOADS
from tradeloop.registry import Lineage, ModelRegistry


def test_models_commands_round_trip(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path / "registry")
    first = registry.register(saved_model(tmp_path / "a", 1))
    second = registry.register(saved_model(tmp_path / "b", 2))
    registry.promote("sma_cross", first, lineage=Lineage(run_id="run-abc", git_commit="deadbeef"))

    listed = tradeloop("models", "list", data_dir=tmp_path)
    assert listed.returncode == 0 and first[:12] in listed.stdout and "2 artifact(s)" in listed.stdout
    shown = tradeloop("models", "show", "sma_cross", data_dir=tmp_path)
    assert shown.returncode == 0 and "hash verified" in shown.stdout and "run-abc" in shown.stdout
    promoted = tradeloop("models", "promote", "sma_cross", second[:8], data_dir=tmp_path)
    assert promoted.returncode == 0 and registry.champion("sma_cross").artifact == second
    rolled = tradeloop("models", "rollback", "sma_cross", data_dir=tmp_path)
    assert rolled.returncode == 0 and registry.champion("sma_cross").artifact == first


def test_models_errors_exit_with_the_model_code(tmp_path: Path) -> None:
    missing = tradeloop("models", "show", "sma_cross", data_dir=tmp_path)
    assert missing.returncode == 6 and "no champion" in missing.stderr
    registry = ModelRegistry(tmp_path / "registry")
    digest = registry.register(saved_model(tmp_path / "a", 1))
    registry.promote("sma_cross", digest, lineage=Lineage())
    (registry.store.path(digest) / "model.json").write_text("{}")
    tampered = tradeloop("models", "show", "sma_cross", data_dir=tmp_path)
    assert tampered.returncode == 6 and "tampered" in tampered.stderr


def test_a_crafted_classifier_is_refused_by_register_and_show_and_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    folder = saved_model(tmp_path / "hostile", 1)
    (folder / "classifier.skops").write_bytes(PAYLOADS[0].build(marker))  # builtins.exec at load
    registered = tradeloop("models", "register", str(folder), data_dir=tmp_path)
    assert registered.returncode == 6, registered.stderr
    assert "refusing to register" in registered.stderr and "['builtins.exec']" in registered.stderr
    registry = ModelRegistry(tmp_path / "registry")
    assert registry.store.list() == [] and not marker.exists()

    good = tradeloop("models", "register", str(saved_model(tmp_path / "good", 2)), data_dir=tmp_path)
    [first] = registry.store.list()
    assert good.returncode == 0 and first in good.stdout
    registry.promote("sma_cross", first, lineage=Lineage())
    bad = registry.store.put(folder)  # a hostile writer skips register: correct hash, crafted file
    manifest = registry.champions_dir / "sma_cross.json"
    manifest.write_text(manifest.read_text().replace(first, bad))
    assert registry.champion("sma_cross").artifact == bad
    shown = tradeloop("models", "show", "sma_cross", data_dir=tmp_path)
    assert shown.returncode == 6 and "outside the allow-list" in shown.stderr and "['builtins.exec']" in shown.stderr
    assert not marker.exists()


def test_a_malformed_manifest_and_a_foreign_strategy_exit_with_the_model_code(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path / "registry")
    digest = registry.register(saved_model(tmp_path / "a", 1))
    registry.promote("sma_cross", digest, lineage=Lineage())
    refused = tradeloop("models", "promote", "momentum", digest[:8], data_dir=tmp_path)
    assert refused.returncode == 6 and "holds a sma_cross model, not momentum" in refused.stderr
    (registry.champions_dir / "sma_cross.json").write_text(
        json.dumps({"current": {"strategy": "sma_cross", "artifact": ""}})
    )
    for args in (("show", "sma_cross"), ("list",), ("rollback", "sma_cross")):
        out = tradeloop("models", *args, data_dir=tmp_path)
        assert out.returncode == 6, (args, out.stderr)
        assert "sma_cross.json is malformed: current.artifact = '': String should match pattern" in out.stderr


def test_register_of_something_that_is_not_a_model_folder_exits_with_the_model_code(tmp_path: Path) -> None:
    not_a_folder = tmp_path / "passwd"
    not_a_folder.write_text("root:x:0:0:root:/root:/bin/bash\n")
    nested = saved_model(tmp_path / "nested", 1)
    (nested / "model.json").write_text("[" * 100_000 + "]" * 100_000)
    as_folder = saved_model(tmp_path / "as_folder", 1)
    (as_folder / "classifier.skops").unlink()
    (as_folder / "classifier.skops").mkdir()
    cases = [
        (not_a_folder, "is not a folder"),
        (nested, "is nested too deeply"),
        (as_folder, "classifier.skops cannot be read (IsADirectoryError"),
    ]
    for folder, message in cases:
        out = tradeloop("models", "register", str(folder), data_dir=tmp_path)
        assert out.returncode == 6, (folder, out.stderr)
        assert "Traceback" not in out.stderr and "refusing to register" in out.stderr and message in out.stderr
