"""Content-addressed, immutable artifact store.

An artifact is a folder of files. Its id is the SHA-256 over every file's relative path
and bytes, in sorted order; it is stored once under ``<root>/artifacts/<id>/`` and never
changed. ``verify`` recomputes the hash: a corrupted or tampered artifact is refused.

Rules:

- An artifact holds regular files and folders only. A symbolic link (to a file or a
  folder, a loop included) or a special file (FIFO, socket, device) anywhere in the folder
  is a ``ModelError`` naming it, at ``put`` (so register) and at ``verify``: links are never
  followed, so nothing outside the folder is ever copied or hashed.
- ``tree_files`` is the one walk (``os.walk`` without following links, errors raised):
  ``tree_digest`` hashes what it lists and ``put`` copies what it lists, each file opened
  with ``O_NOFOLLOW``; the id is the digest of the *copy*, so the stored folder always
  verifies. Empty folders carry no content and are neither hashed nor copied.
- ``put`` copies into ``artifacts/.tmp-*`` and renames; on any failure the temp folder is
  removed.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import uuid
from pathlib import Path
from typing import NoReturn

from tradeloop.errors import ArtifactIntegrityError, ModelError

_CHUNK = 1 << 20


def tree_files(directory: Path) -> list[Path]:
    """The regular files under ``directory`` (relative paths, sorted); a link or special file is refused."""
    directory = Path(directory)
    if not directory.is_dir() or directory.is_symlink():
        what = (
            "is a symbolic link"
            if directory.is_symlink()
            else "is not a folder"
            if directory.exists()
            else "does not exist"
        )
        raise ModelError(
            f"{directory} {what}: give a saved model folder (holding model.json and "
            "classifier.skops), e.g. the model/ folder a research run wrote"
        )

    def fail(exc: OSError) -> NoReturn:
        raise ModelError(
            f"{exc.filename} cannot be read ({type(exc).__name__}: {exc.strerror or exc}); fix its "
            "permissions or remove it from the model folder"
        )

    files = []
    for top, dirs, names in os.walk(directory, onerror=fail, followlinks=False):
        for name in sorted(dirs) + sorted(names):
            path = Path(top) / name
            try:
                mode = os.lstat(path).st_mode
            except OSError as exc:
                fail(exc)
            if stat.S_ISLNK(mode):
                raise ModelError(
                    f"{path} is a symbolic link (to {os.readlink(path)}); a model folder holds only "
                    "regular files and folders: replace the link with the file itself or remove it"
                )
            if stat.S_ISREG(mode):
                files.append(path.relative_to(directory))
            elif not stat.S_ISDIR(mode):
                raise ModelError(
                    f"{path} is not a regular file (mode {stat.filemode(mode)}); a model folder holds "
                    "only regular files and folders: remove it"
                )
    return sorted(files, key=lambda p: p.as_posix())


def _open_file(path: Path):
    try:
        return os.fdopen(os.open(path, os.O_RDONLY | os.O_NOFOLLOW), "rb")
    except OSError as exc:  # swapped for a link after the walk (ELOOP), removed, unreadable
        raise ModelError(
            f"{path} cannot be read ({type(exc).__name__}: {exc.strerror or exc}); a model folder "
            "holds only regular files: fix it and try again"
        ) from None


def tree_digest(directory: Path) -> str:
    directory = Path(directory)
    h = hashlib.sha256()
    files = tree_files(directory)
    if not files:
        raise ModelError(f"{directory} holds no files: nothing to store")
    for rel in files:
        name = rel.as_posix().encode()
        h.update(len(name).to_bytes(4, "big") + name)
        with _open_file(directory / rel) as fh:
            data = fh.read()
        h.update(len(data).to_bytes(8, "big") + data)
    return h.hexdigest()


class ArtifactStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root) / "artifacts"

    def path(self, digest: str) -> Path:
        return self.root / digest

    def put(self, directory: Path) -> str:
        """Copy ``directory`` in (atomically: temp folder + rename); returns its id."""
        directory = Path(directory)
        files = tree_files(directory)
        if not files:
            raise ModelError(f"{directory} holds no files: nothing to store")
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f".tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            for rel in files:
                (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
                with _open_file(directory / rel) as src, open(tmp / rel, "xb") as dst:
                    shutil.copyfileobj(src, dst, _CHUNK)
            digest = tree_digest(tmp)  # the id of what was copied, so the stored folder always verifies
            target = self.path(digest)
            if target.exists():
                shutil.rmtree(tmp)
                return digest  # same content already stored: immutable, nothing to do
            try:
                os.rename(tmp, target)
            except OSError:
                if not target.exists():
                    raise
                shutil.rmtree(tmp)  # another process stored the same content first
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return digest

    def verify(self, digest: str) -> Path:
        """The artifact's folder, after checking its bytes still hash to ``digest``."""
        target = self.path(digest)
        if not target.is_dir():
            raise ArtifactIntegrityError(f"artifact {digest[:12]} is missing from {self.root}")
        try:
            actual = tree_digest(target)
        except ModelError as exc:
            raise ArtifactIntegrityError(
                f"artifact {digest[:12]} is corrupted or tampered: {exc}; it will not be "
                "loaded (restore it from a backup or train and promote a new model)"
            ) from None
        if actual != digest:
            raise ArtifactIntegrityError(
                f"artifact {digest[:12]} is corrupted or tampered: its files hash to {actual[:12]}; "
                "it will not be loaded (restore it from a backup or train and promote a new model)"
            )
        return target

    def list(self) -> list[str]:
        return (
            sorted(p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))
            if self.root.is_dir()
            else []
        )
