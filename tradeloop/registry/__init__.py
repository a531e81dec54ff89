"""Model registry: content-addressed artifacts and champion manifests with lineage."""

from tradeloop.registry.champions import ModelRegistry
from tradeloop.registry.lineage import Lineage, git_commit, snapshot_hash
from tradeloop.registry.manifest import ChampionEntry, Manifest
from tradeloop.registry.store import ArtifactStore, tree_digest

__all__ = [
    "ArtifactStore",
    "ChampionEntry",
    "Lineage",
    "Manifest",
    "ModelRegistry",
    "git_commit",
    "snapshot_hash",
    "tree_digest",
]
