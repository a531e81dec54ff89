"""Content-addressed, immutable artifact store.

An artifact is a folder of files. Its id is the SHA-256 over every file's relative path
and bytes, in sorted order; it is stored once under ``<root>/artifacts/<id>/`` and never
changed. ``verify`` recomputes the hash: a corrupted or tampered artifact is refused.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from pathlib import Path

from tradeloop.errors import ArtifactIntegrityError, ModelError


def tree_digest(directory: Path) -> str:
    directory = Path(directory)
    h = hashlib.sha256()
    files = sorted(p for p in directory.rglob("*") if p.is_file())
    if not files:
        raise ModelError(f"{directory} holds no files: nothing to store")
    for path in files:
        rel = path.relative_to(directory).as_posix().encode()
        h.update(len(rel).to_bytes(4, "big") + rel)
        data = path.read_bytes()
        h.update(len(data).to_bytes(8, "big") + data)
    return h.hexdigest()


class ArtifactStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root) / "artifacts"

    def path(self, digest: str) -> Path:
        return self.root / digest

    def put(self, directory: Path) -> str:
        """Copy ``directory`` in (atomically: temp folder + rename); returns its id."""
        digest = tree_digest(directory)
        target = self.path(digest)
        if target.exists():
            return digest  # same content already stored: immutable, nothing to do
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f".tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        shutil.copytree(directory, tmp)
        try:
            os.rename(tmp, target)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
            if not target.exists():
                raise
        return digest

    def verify(self, digest: str) -> Path:
        """The artifact's folder, after checking its bytes still hash to ``digest``."""
        target = self.path(digest)
        if not target.is_dir():
            raise ArtifactIntegrityError(f"artifact {digest[:12]} is missing from {self.root}")
        actual = tree_digest(target)
        if actual != digest:
            raise ArtifactIntegrityError(
                f"artifact {digest[:12]} is corrupted or tampered: its files hash to {actual[:12]}; "
                "it will not be loaded (restore it from a backup or train and promote a new model)")
        return target

    def list(self) -> list[str]:
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")) \
            if self.root.is_dir() else []
