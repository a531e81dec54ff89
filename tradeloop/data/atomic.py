"""Atomic file replacement: write a temp file beside the target, fsync, rename.

A process killed at any point leaves either the previous file or the new one, never a
half-written file under the real name. Leftover temp files are hidden (leading dot, no
``.parquet`` suffix), ignored by readers and removed by the next writer.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import polars as pl

TMP_MARK = ".tmp-"


def temp_path_for(target: Path) -> Path:
    return target.with_name(f".{target.name}{TMP_MARK}{os.getpid()}-{uuid.uuid4().hex[:8]}")


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_parquet_atomic(frame: pl.DataFrame, target: Path) -> None:
    """Write ``frame`` to ``target`` so that readers only ever see a complete file."""
    _write_atomic(target, lambda tmp: frame.write_parquet(tmp, compression="zstd", statistics=True))


def write_bytes_atomic(data: bytes, target: Path) -> None:
    """Replace ``target`` with ``data`` so that readers only ever see a complete file."""
    _write_atomic(target, lambda tmp: tmp.write_bytes(data))


def _write_atomic(target: Path, write: Callable[[Path], object]) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path_for(target)
    try:
        write(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, target)
        _fsync_dir(target.parent)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def remove_stale_temps(directory: Path) -> int:
    """Delete temp files left by killed writers (call while holding the directory lock)."""
    removed = 0
    if directory.is_dir():
        for path in directory.iterdir():
            if path.name.startswith(".") and TMP_MARK in path.name:
                path.unlink(missing_ok=True)
                removed += 1
    return removed


@contextlib.contextmanager
def directory_lock(directory: Path) -> Iterator[None]:
    """Exclusive advisory lock so two processes never write the same series at once."""
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
