"""A bounded cache of precomputed research work, keyed by the content of the data it came from.

An optuna study scores many trials on the same candles; each trial's walk-forward computes
the same features, often the same strategy indicators (a window seen before) and, where no
event closed between two retrains, the same threshold fit. This cache keeps such results:

* Keys start with the data's content hash (:func:`frame_digest`, sha256 of every column's
  values in order, names and dtypes included), so changed candles never hit an entry made
  from other candles; the rest of the key names the computation and every parameter it
  reads (a feature list, a strategy's ``describe()`` with its rule, a fit's training rows).
* Bounded: at most ``max_entries`` entries and about ``max_bytes`` of polars frames and numpy
  arrays; the least recently used entry goes first. An entry larger than the whole budget
  is computed and returned but not kept.
* A value is returned as stored: callers must not mutate it (polars frames are immutable;
  fitted estimators are only read after ``fit``).

Results with the cache equal results without it: an entry is only ever the output of the
same deterministic computation on the same inputs.

Who reads it: ``with reusing(cache):`` makes ``cache`` the active one for the code inside (a
context variable, so threads and tasks each see their own); ``meta_dataset`` and ``enrich``
(features, strategy signals) and ``AdaptiveThreshold.fit`` consult :func:`active_cache` and
compute everything anew when there is none. ``tradeloop.research.tuning`` keeps one per
study run, so an optuna study's trials and folds share it.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar

import numpy as np
import polars as pl

from tradeloop.errors import ConfigError

__all__ = ["DataScope", "WorkCache", "active_cache", "array_digest", "frame_digest", "reusing"]

T = TypeVar("T")


def frame_digest(frame: pl.DataFrame) -> str:
    """sha256 of a frame's column names, dtypes and values, in column and row order."""
    digest = hashlib.sha256()
    for name, series in frame.to_dict().items():
        digest.update(f"{name}\0{series.dtype}\0".encode())
        if series.dtype == pl.String:
            digest.update("\0".join(series.fill_null("\1").to_list()).encode())
        else:
            digest.update(np.ascontiguousarray(series.to_numpy()).tobytes())
        digest.update(series.is_null().to_numpy().tobytes())
    return digest.hexdigest()


def array_digest(*arrays: np.ndarray) -> str:
    """sha256 of numpy arrays' dtypes, shapes and bytes, in order."""
    digest = hashlib.sha256()
    for array in arrays:
        values = np.ascontiguousarray(array)
        digest.update(f"{values.dtype}{values.shape}\0".encode())
        digest.update(values.tobytes())
    return digest.hexdigest()


def _size(value: object) -> int:
    if isinstance(value, pl.DataFrame):
        return int(value.estimated_size())
    if isinstance(value, np.ndarray):
        return int(value.nbytes)
    return 0


class WorkCache:
    """Least-recently-used cache of computed values, bounded in entries and bytes.

    Parameters
    ----------
    max_entries
        Entries kept at most, e.g. 64.
    max_bytes
        Approximate bytes of frames and arrays kept at most, e.g. ``256 * 2**20``.
    """

    def __init__(self, *, max_entries: int = 64, max_bytes: int = 256 * 2**20) -> None:
        if max_entries < 1 or max_bytes < 1:
            raise ConfigError(
                f"WorkCache(max_entries={max_entries}, max_bytes={max_bytes}): both must be at least 1; "
                "pass no cache at all to compute everything anew"
            )
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._entries: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def nbytes(self) -> int:
        """Approximate bytes held (frames and arrays)."""
        return self._bytes

    def get(self, key: Hashable, compute: Callable[[], T]) -> T:
        """The value stored under ``key``, else ``compute()`` stored under it (bounds permitting)."""
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                self.hits += 1
                return self._entries[key][0]
            self.misses += 1
        value = compute()
        size = _size(value)
        if size > self.max_bytes:
            return value
        with self._lock:
            if key not in self._entries:
                self._entries[key] = (value, size)
                self._bytes += size
            while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
                _, (_, dropped) = self._entries.popitem(last=False)
                self._bytes -= dropped
        return value

    def scope(self, frame: pl.DataFrame) -> DataScope:
        """This cache seen through one data version: the content hash of ``frame``."""
        return DataScope(self, frame_digest(frame))


class DataScope:
    """A :class:`WorkCache` whose keys all start with one data version (see ``WorkCache.scope``)."""

    def __init__(self, cache: WorkCache, version: str) -> None:
        self.cache = cache
        self.version = version

    def get(self, key: tuple, compute: Callable[[], T]) -> T:
        return self.cache.get((self.version, *key), compute)


_ACTIVE: ContextVar[WorkCache | None] = ContextVar("tradeloop_work_cache", default=None)


def active_cache() -> WorkCache | None:
    """The cache made active by the innermost :func:`reusing` around this call (None: none)."""
    return _ACTIVE.get()


@contextmanager
def reusing(cache: WorkCache | None) -> Iterator[WorkCache | None]:
    """Make ``cache`` the active one inside the block (``None``: none, everything computed anew)."""
    token = _ACTIVE.set(cache)
    try:
        yield cache
    finally:
        _ACTIVE.reset(token)
