"""Lineage of a model: where it came from, recorded in the champion manifest."""

from __future__ import annotations

import hashlib
import subprocess
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field


class Lineage(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    git_commit: str = "unknown"
    data_snapshot: str = Field(default="unknown", description="sha256 over the candle files used")
    notebook: str | None = None
    parameters: dict = Field(default_factory=dict)
    run_id: str | None = Field(default=None, description="Dagster run id")
    metrics: dict = Field(default_factory=dict)
    gate: list[dict] = Field(
        default_factory=list,
        description="the promotion gate's checks as promoted: name, "
        "value, bar, passed, detail, shown, shown_bar (tradeloop.research.gate)",
    )
    evidence: str = Field(
        default="research",
        pattern="^(research|live)$",
        description="what the promotion was judged on: research (walk-forward, tradeloop.research.gate) or live "
        "(a session's paired shadow returns, tradeloop.challengers)",
    )
    created_at: str = Field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))


def git_commit(repo: Path | None = None) -> str:
    """HEAD's commit id, with ``-dirty`` when tracked files changed; ``unknown`` outside git."""
    cwd = str(repo) if repo else None
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("-dirty" if dirty else "")


def snapshot_hash(files: list[Path]) -> str:
    """sha256 over the given data files' names and bytes (order-independent)."""
    h = hashlib.sha256()
    for path in sorted(Path(f) for f in files):
        h.update(path.name.encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()
