"""The schema of a champion manifest (``champions/<strategy>.json``) and its history log.

Rules:

- A manifest is ``{"current": <entry> | null, "previous": [<entry>, ...]}``, nothing else.
  An entry names a known strategy, a full 64-hex artifact id (so it can only address a
  folder of the artifact store, never a path elsewhere), its lineage and when it was
  promoted. Every entry's strategy is the manifest's own.
- Anything else (valid JSON of the wrong shape included) is a ``ModelError`` naming the
  field, the value and the fix; readers never see a half-parsed manifest.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from tradeloop.errors import ModelError
from tradeloop.registry.lineage import Lineage
from tradeloop.thresholds.model_doc import KnownStrategy, parse

DIGEST_PATTERN = r"^[0-9a-f]{64}$"


class ChampionEntry(BaseModel):
    """One champion: which artifact a strategy trades, with its lineage."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    strategy: KnownStrategy
    artifact: str = Field(pattern=DIGEST_PATTERN, description="sha256 id of the artifact (64 hex digits)")
    lineage: Lineage
    promoted_at: str = Field(min_length=1)


class Manifest(BaseModel):
    """The champion in force and the stack of earlier ones (the last is the next rollback)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    current: ChampionEntry | None
    previous: tuple[ChampionEntry, ...]


class HistoryEvent(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    event: Literal["promote", "rollback"]
    artifact: str = Field(pattern=DIGEST_PATTERN)
    at: str


EMPTY = Manifest(current=None, previous=())


def parse_manifest(raw: object, *, strategy: str, source: str) -> Manifest:
    """``raw`` (decoded JSON) as the manifest of ``strategy``; ``ModelError`` names what is wrong."""
    fix = (
        f"restore it from {strategy}.history.jsonl (promote the artifact logged last with "
        "`tradeloop models promote`) or delete it and promote again"
    )
    manifest = parse(Manifest, raw, source=source, fix=fix)
    entries = ([("current", manifest.current)] if manifest.current else []) + [
        (f"previous.{i}", e) for i, e in enumerate(manifest.previous)
    ]
    for where, entry in entries:
        if entry.strategy != strategy:
            raise ModelError(
                f"{source} is malformed: {where}.strategy = {entry.strategy!r} in the manifest of {strategy!r}; {fix}"
            )
    return manifest
