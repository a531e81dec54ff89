"""Champion manifests: which artifact each strategy trades, with lineage and history.

``<root>/champions/<strategy>.json`` holds the champion in force and the stack of earlier
ones; ``<strategy>.history.jsonl`` logs every promotion and rollback. Both change under a
lock, the manifest by atomic replace, so a reader sees the old champion or the new one,
never a mix. Manifests are parsed with a schema (``registry.manifest``): a malformed one
is a ``ModelError``, never a half-read champion.

The artifact is verified *before* the manifest changes: its hash must match, its model
must load (``ThresholdModel.load``: schema-checked ``model.json``, allow-listed classifier
file, so no code in it runs) and its strategy must be the one it is promoted for. A
refused artifact leaves the previous champion in force. ``load`` checks the same, so a
manifest edited by hand to point at another strategy's model is refused too.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

from pydantic import ValidationError

from tradeloop.data.atomic import directory_lock, write_bytes_atomic
from tradeloop.errors import ConfigError, ModelError
from tradeloop.registry.lineage import Lineage
from tradeloop.registry.manifest import EMPTY, ChampionEntry, HistoryEvent, Manifest, parse_manifest
from tradeloop.registry.store import ArtifactStore, tree_files
from tradeloop.strategies import STRATEGIES
from tradeloop.thresholds.model import MODEL_JSON, ThresholdModel, read_json
from tradeloop.thresholds.model_doc import ModelDoc, parse, problems

_NAME = re.compile(r"^[a-z0-9_][a-z0-9_.-]{0,63}$")


class ModelRegistry:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.store = ArtifactStore(self.root)
        self.champions_dir = self.root / "champions"
        # the manifest last parsed per strategy, keyed by its file's identity: an engine asks every bar, and a
        # promotion replaces the file atomically (a new inode), so an unchanged key is an unchanged manifest
        self._parsed: dict[str, tuple[tuple[int, int, int], Manifest]] = {}

    # ------------------------------------------------------------------ reading
    def _manifest_path(self, strategy: str) -> Path:
        if not _NAME.match(strategy):
            raise ConfigError(f"strategy name {strategy!r} is invalid: use lower-case letters, digits, _ . -")
        return self.champions_dir / f"{strategy}.json"

    def _read(self, strategy: str) -> Manifest:
        path = self._manifest_path(strategy)
        try:
            stat = path.stat()
            key = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
            cached = self._parsed.get(strategy)
            if cached is not None and cached[0] == key:
                return cached[1]
            raw = json.loads(path.read_bytes())
        except FileNotFoundError:
            return EMPTY
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ModelError(f"{path} is not valid JSON ({exc}); restore it from the history file") from None
        except RecursionError:
            raise ModelError(
                f"{path} is nested too deeply to be a manifest tradeloop wrote; restore it from the history file"
            ) from None
        except OSError as exc:
            raise ModelError(f"{path} cannot be read ({exc}); fix its permissions or restore it") from None
        manifest = parse_manifest(raw, strategy=strategy, source=str(path))
        self._parsed[strategy] = (key, manifest)
        return manifest

    def champion(self, strategy: str) -> ChampionEntry | None:
        return self._read(strategy).current

    def manifest(self, strategy: str) -> Manifest:
        """The champion in force and the earlier ones (``previous[-1]`` is what ``rollback`` restores)."""
        return self._read(strategy)

    def describe(self, artifact: str) -> ModelDoc:
        """A stored artifact's ``model.json``, schema-checked (strategy, training end, universe...),
        for listings: neither its hash nor its classifier file is read (``model_of`` checks both)."""
        path = self.store.path(artifact) / MODEL_JSON
        fix = "restore the artifact or remove it from the store"
        return parse(ModelDoc, read_json(path, fix=fix), source=str(path), fix=fix)

    def strategies(self) -> list[str]:
        if not self.champions_dir.is_dir():
            return []
        return sorted(p.stem for p in self.champions_dir.glob("*.json"))

    def history(self, strategy: str) -> list[dict]:
        path = self._manifest_path(strategy).with_suffix(".history.jsonl")
        if not path.exists():
            return []
        events = []
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            try:
                events.append(HistoryEvent.model_validate_json(line).model_dump())
            except ValidationError as exc:
                raise ModelError(
                    f"{path} line {number} is malformed: {problems(exc)}; remove or repair that line"
                ) from None
        return events

    def load(self, strategy: str) -> tuple[ChampionEntry, ThresholdModel]:
        """The champion and its model, verified against its content hash and its strategy."""
        entry = self.champion(strategy)
        if entry is None:
            raise ModelError(f"no champion for strategy {strategy!r}; train one (make demo) and promote it")
        return entry, self.model_of(entry.artifact, strategy=strategy)

    def model_of(self, artifact: str, *, strategy: str) -> ThresholdModel:
        """The artifact's model after its hash, its files and its strategy were checked."""
        model = ThresholdModel.load(self.store.verify(artifact))
        if model.strategy.name != strategy:
            raise ModelError(
                f"artifact {artifact[:12]} holds a {model.strategy.name} model, not {strategy}; "
                f"promote it as the champion of {model.strategy.name}, or train a {strategy} model"
            )
        return model

    # ------------------------------------------------------------------ changing
    def register(self, model_dir: Path) -> str:
        """Store a saved model folder; returns its artifact id. A folder that would not load
        (malformed model.json, a classifier file naming types off the allow-list) is refused."""
        try:
            tree_files(model_dir)  # no symlink, no special file: what is loaded is what is stored
            ThresholdModel.load(model_dir)
        except ModelError as exc:
            raise ModelError(f"refusing to register {model_dir}: {exc}") from None
        return self.store.put(model_dir)

    def promote(self, strategy: str, artifact: str, *, lineage: Lineage) -> ChampionEntry:
        self._manifest_path(strategy)
        if strategy not in STRATEGIES:
            raise ModelError(f"strategy {strategy!r} is unknown; promote for one of {', '.join(sorted(STRATEGIES))}")
        artifact = self._resolve(artifact)
        self.model_of(artifact, strategy=strategy)
        entry = ChampionEntry(strategy=strategy, artifact=artifact, lineage=lineage, promoted_at=_now())
        with directory_lock(self.champions_dir):
            doc = self._read(strategy)
            previous = doc.previous + ((doc.current,) if doc.current else ())
            self._write(strategy, Manifest(current=entry, previous=previous), event="promote", artifact=artifact)
        return entry

    def rollback(self, strategy: str) -> ChampionEntry:
        """Put the previous champion back in force (its artifact verified first)."""
        with directory_lock(self.champions_dir):
            doc = self._read(strategy)
            if not doc.previous:
                raise ModelError(f"strategy {strategy!r} has no earlier champion to roll back to")
            back = doc.previous[-1]
            self.model_of(back.artifact, strategy=strategy)
            entry = back.model_copy(update={"promoted_at": _now()})
            self._write(
                strategy, Manifest(current=entry, previous=doc.previous[:-1]), event="rollback", artifact=back.artifact
            )
        return entry

    def _write(self, strategy: str, doc: Manifest, *, event: str, artifact: str) -> None:
        write_bytes_atomic(
            json.dumps(doc.model_dump(mode="json"), indent=2, sort_keys=True).encode(), self._manifest_path(strategy)
        )
        line = json.dumps({"event": event, "artifact": artifact, "at": _now()}) + "\n"
        with open(self.champions_dir / f"{strategy}.history.jsonl", "a") as fh:
            fh.write(line)

    def resolve(self, prefix: str) -> str:
        """The full id of the stored artifact ``prefix`` names (ModelError: unknown or ambiguous)."""
        return self._resolve(prefix)

    def _resolve(self, prefix: str) -> str:
        if not re.fullmatch(r"[0-9a-f]{6,64}", prefix):
            raise ModelError(
                f"artifact={prefix!r} is not an artifact id; give its id or a unique prefix of at "
                "least 6 lower-case hex digits (tradeloop models list shows them)"
            )
        matches = [d for d in self.store.list() if d.startswith(prefix)]
        if len(matches) != 1:
            known = ", ".join(d[:12] for d in self.store.list()) or "none"
            raise ModelError(
                f"artifact {prefix!r} matches {len(matches)} stored artifacts (known: {known}); give more of its id"
            )
        return matches[0]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
