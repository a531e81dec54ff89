"""``tradeloop models``: list, show (hash-verified), promote, rollback, and exit codes."""

from __future__ import annotations

from pathlib import Path

from test_cli import tradeloop

from tests.registry.test_registry import saved_model
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
