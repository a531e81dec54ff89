"""Champion manifests: which artifact each strategy trades, with lineage and history.

``<root>/champions/<strategy>.json`` holds the champion in force and the stack of earlier
ones; ``<strategy>.history.jsonl`` logs every promotion and rollback. Both change under a
lock, the manifest by atomic replace, so a reader sees the old champion or the new one,
never a mix. The artifact is verified *before* the manifest changes: a corrupted artifact
is refused and the previous champion stays in force.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from tradeloop.data.atomic import directory_lock, write_bytes_atomic
from tradeloop.errors import ConfigError, ModelError
from tradeloop.registry.lineage import Lineage
from tradeloop.registry.store import ArtifactStore
from tradeloop.thresholds.model import ThresholdModel

_NAME = re.compile(r"^[a-z0-9_][a-z0-9_.-]{0,63}$")


class ChampionEntry(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    strategy: str
    artifact: str
    lineage: Lineage
    promoted_at: str


class ModelRegistry:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.store = ArtifactStore(self.root)
        self.champions_dir = self.root / "champions"

    # ------------------------------------------------------------------ reading
    def _manifest_path(self, strategy: str) -> Path:
        if not _NAME.match(strategy):
            raise ConfigError(f"strategy name {strategy!r} is invalid: use lower-case letters, digits, _ . -")
        return self.champions_dir / f"{strategy}.json"

    def _read(self, strategy: str) -> dict:
        path = self._manifest_path(strategy)
        if not path.exists():
            return {"current": None, "previous": []}
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ModelError(f"{path} is not valid JSON ({exc}); restore it from the history file") from None

    def champion(self, strategy: str) -> ChampionEntry | None:
        current = self._read(strategy)["current"]
        return ChampionEntry(**current) if current else None

    def strategies(self) -> list[str]:
        if not self.champions_dir.is_dir():
            return []
        return sorted(p.stem for p in self.champions_dir.glob("*.json"))

    def history(self, strategy: str) -> list[dict]:
        path = self.champions_dir / f"{strategy}.history.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def load(self, strategy: str) -> tuple[ChampionEntry, ThresholdModel]:
        """The champion and its model, verified against its content hash."""
        entry = self.champion(strategy)
        if entry is None:
            raise ModelError(f"no champion for strategy {strategy!r}; train one (make demo) and promote it")
        return entry, ThresholdModel.load(self.store.verify(entry.artifact))

    # ------------------------------------------------------------------ changing
    def register(self, model_dir: Path) -> str:
        """Store a saved model folder; returns its artifact id."""
        ThresholdModel.load(model_dir)  # refuse what would not load later
        return self.store.put(model_dir)

    def promote(self, strategy: str, artifact: str, *, lineage: Lineage) -> ChampionEntry:
        artifact = self._resolve(artifact)
        self.store.verify(artifact)
        entry = ChampionEntry(strategy=strategy, artifact=artifact, lineage=lineage, promoted_at=_now())
        with directory_lock(self.champions_dir):
            doc = self._read(strategy)
            if doc["current"]:
                doc["previous"].append(doc["current"])
            doc["current"] = entry.model_dump(mode="json")
            self._write(strategy, doc, event="promote", artifact=artifact)
        return entry

    def rollback(self, strategy: str) -> ChampionEntry:
        """Put the previous champion back in force (its artifact verified first)."""
        with directory_lock(self.champions_dir):
            doc = self._read(strategy)
            if not doc["previous"]:
                raise ModelError(f"strategy {strategy!r} has no earlier champion to roll back to")
            previous = ChampionEntry(**doc["previous"][-1])
            self.store.verify(previous.artifact)
            doc["current"] = doc["previous"].pop() | {"promoted_at": _now()}
            self._write(strategy, doc, event="rollback", artifact=previous.artifact)
        return ChampionEntry(**doc["current"])

    def _write(self, strategy: str, doc: dict, *, event: str, artifact: str) -> None:
        write_bytes_atomic(json.dumps(doc, indent=2, sort_keys=True).encode(), self._manifest_path(strategy))
        line = json.dumps({"event": event, "artifact": artifact, "at": _now()}) + "\n"
        with open(self.champions_dir / f"{strategy}.history.jsonl", "a") as fh:
            fh.write(line)

    def _resolve(self, prefix: str) -> str:
        matches = [d for d in self.store.list() if d.startswith(prefix)]
        if len(matches) != 1:
            known = ", ".join(d[:12] for d in self.store.list()) or "none"
            raise ModelError(f"artifact {prefix!r} matches {len(matches)} stored artifacts (known: {known}); "
                             "give more of its id")
        return matches[0]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
