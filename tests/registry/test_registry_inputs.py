"""What register and the store do with folders that are not plain model folders: a file, a
folder where a file belongs, deeply nested JSON, symlinks. Each is a ``ModelError`` that
names the path; nothing is half-stored."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from tests.registry.test_registry import saved_model
from tradeloop.errors import ArtifactIntegrityError, ModelError
from tradeloop.registry import Lineage, ModelRegistry, tree_digest
from tradeloop.thresholds import ThresholdModel


@pytest.fixture
def registry(tmp_path) -> ModelRegistry:
    return ModelRegistry(tmp_path / "registry")


def _leftovers(registry: ModelRegistry) -> list[str]:
    root = registry.store.root
    return sorted(os.listdir(root)) if root.is_dir() else []


def test_a_file_instead_of_a_model_folder_is_refused(registry, tmp_path) -> None:
    not_a_folder = tmp_path / "passwd"
    not_a_folder.write_text("root:x:0:0:root:/root:/bin/bash\n")
    with pytest.raises(ModelError, match=rf"refusing to register {not_a_folder}: {not_a_folder} is not a folder"):
        registry.register(not_a_folder)
    with pytest.raises(ModelError, match=rf"{tmp_path / 'nowhere'} does not exist"):
        registry.register(tmp_path / "nowhere")


@pytest.mark.parametrize("name", ["model.json", "classifier.skops"])
def test_a_folder_where_a_model_file_belongs_is_refused(registry, tmp_path, name: str) -> None:
    folder = saved_model(tmp_path / "m", 1)
    (folder / name).unlink()
    (folder / name).mkdir()
    (folder / name / "x").write_text("{}")
    with pytest.raises(ModelError, match=rf"{folder / name} cannot be read \(IsADirectoryError"):
        ThresholdModel.load(folder)
    with pytest.raises(ModelError, match="refusing to register"):
        registry.register(folder)
    assert _leftovers(registry) == []


def test_deeply_nested_json_is_refused_not_a_recursion_error(registry, tmp_path) -> None:
    folder = saved_model(tmp_path / "m", 1)
    (folder / "model.json").write_text("[" * 200_000 + "]" * 200_000)
    with pytest.raises(ModelError, match=r"model.json is nested too deeply"):
        ThresholdModel.load(folder)

    good = registry.register(saved_model(tmp_path / "good", 1))
    registry.promote("sma_cross", good, lineage=Lineage())
    manifest = registry.champions_dir / "sma_cross.json"
    manifest.write_text('{"current": ' * 200_000 + "null" + "}" * 200_000)
    with pytest.raises(ModelError, match=r"sma_cross.json is nested too deeply"):
        registry.champion("sma_cross")


def test_a_symlinked_folder_is_refused_at_register_and_never_stored(registry, tmp_path) -> None:
    folder = saved_model(tmp_path / "m", 1)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("not part of the model")
    (folder / "sub").symlink_to(outside, target_is_directory=True)
    with pytest.raises(ModelError, match=rf"{folder / 'sub'} is a symbolic link \(to {outside}\)"):
        registry.register(folder)
    with pytest.raises(ModelError, match="is a symbolic link"):
        registry.store.put(folder)
    assert _leftovers(registry) == []


def test_a_symlinked_file_is_refused_so_register_copies_nothing_it_points_at(registry, tmp_path) -> None:
    folder = saved_model(tmp_path / "m", 1)
    secret = tmp_path / "secret.txt"
    secret.write_text("api key")
    (folder / "notes.txt").symlink_to(secret)
    with pytest.raises(ModelError, match=rf"{folder / 'notes.txt'} is a symbolic link"):
        registry.register(folder)
    assert _leftovers(registry) == []


def test_a_symlink_loop_is_refused_and_leaves_no_temp_folder(registry, tmp_path) -> None:
    folder = saved_model(tmp_path / "m", 1)
    (folder / "sub").mkdir()
    (folder / "sub" / "up").symlink_to(folder, target_is_directory=True)
    with pytest.raises(ModelError, match=rf"{folder / 'sub' / 'up'} is a symbolic link"):
        registry.store.put(folder)
    with pytest.raises(ModelError, match="is a symbolic link"):
        registry.register(folder)
    assert _leftovers(registry) == []


def test_subfolders_are_stored_and_verify_like_they_were_hashed(registry, tmp_path) -> None:
    """The digest and the copy see the same files: a model folder with a real subfolder (notes,
    a plot) registers, promotes and verifies."""
    folder = saved_model(tmp_path / "m", 1)
    (folder / "notes" / "plots").mkdir(parents=True)
    (folder / "notes" / "plots" / "curve.txt").write_text("1 2 3")
    (folder / "empty").mkdir()
    digest = registry.register(folder)
    assert digest == tree_digest(folder)
    registry.promote("sma_cross", digest, lineage=Lineage())
    stored = registry.store.verify(digest)
    assert (stored / "notes" / "plots" / "curve.txt").read_text() == "1 2 3"
    assert _leftovers(registry) == [digest]


def test_a_symlink_planted_in_a_stored_artifact_fails_verification(registry, tmp_path) -> None:
    digest = registry.register(saved_model(tmp_path / "m", 1))
    stored = registry.store.path(digest)
    target = tmp_path / "elsewhere.skops"
    shutil.move(stored / "classifier.skops", target)
    (stored / "classifier.skops").symlink_to(target)  # same bytes through a link: still refused
    with pytest.raises(
        ArtifactIntegrityError,
        match=rf"artifact {digest[:12]} is corrupted or tampered: "
        rf".*classifier.skops is a symbolic link",
    ):
        registry.store.verify(digest)


def test_the_manifest_reader_refuses_a_folder_in_its_place(registry, tmp_path) -> None:
    registry.champions_dir.mkdir(parents=True)
    (registry.champions_dir / "sma_cross.json").mkdir()
    with pytest.raises(ModelError, match=r"sma_cross.json cannot be read"):
        registry.champion("sma_cross")
    assert json.dumps(registry.history("sma_cross")) == "[]"
