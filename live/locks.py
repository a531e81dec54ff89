"""One engine per trading session and per exchange account.

Rules:

* Keys: ``session:<name>`` for every engine; ``account:<venue>:<sha256 of the API key>`` for a
  live (keyed) engine, so two engines never trade one exchange account (their cash and
  positions would fight). A paper session is its own account: it takes only its session
  lock, and two paper sessions run side by side.
* PostgreSQL: ``pg_try_advisory_lock`` on a 64-bit hash of the key, on a connection held for
  the engine's lifetime; the server frees it when that connection (the process) dies.
  SQLite: ``flock(LOCK_EX | LOCK_NB)`` on ``<database file>.<hash>.lock`` next to the
  database; the kernel frees it when the process dies. Lock files are left in place.
* After taking a lock the holder writes itself (host, pid, since) to ``engine_locks``; a
  refused engine reads that row and raises SessionStateError (exit 8) naming the holder. A
  row whose lock is free belonged to a dead engine and is overwritten.
* The PostgreSQL locks die with their connection when the server goes away:
  :meth:`EngineLocks.verify` (the engine calls it before every bar and when the database is
  back) reconnects and takes them again, and refuses to go on if another engine took one
  meanwhile. A server restart or an admin kill ends the lock connection without any error on
  the bar path (its pool reconnects), so the check runs every bar, not only after an outage.
  A SQLite lock file that was deleted or replaced is locked again the same way. After a
  network cut the server may still hold a lock for the old connection until it notices that
  connection is gone; that server process (its pid noted when the connection was made) is
  ours and is terminated (``pg_terminate_backend``) before taking the lock again. Likewise
  when ``engine_locks`` names a process of this host that no longer exists (a ``kill -9`` the
  server has not noticed yet): a dead engine holds nothing; only server processes whose
  ``application_name`` names that dead holder (every lock connection sets it) are ended.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import socket
import time
from pathlib import Path
from typing import IO

from sqlalchemy import Connection, text

from tradeloop.errors import ConfigError, SessionStateError
from tradeloop.ops import OpsStore
from tradeloop.ops.database import is_connection_error

log = logging.getLogger(__name__)


def session_lock_key(name: str) -> str:
    return f"session:{name}"


def account_lock_key(*, mode: str, venue: str, api_key: str | None) -> str | None:
    """The exchange account's lock key; None for paper trading (each session its own account).

    Raises
    ------
    ConfigError
        A live session without an API key (None or blank): it has no account to lock and must not trade.
    """
    if mode == "paper":
        return None
    if api_key is None or not api_key.strip():
        raise ConfigError(
            f"a live session on {venue} has a blank API key, so its account cannot be locked against a second "
            "engine; set the venue's API key (live.venue_keys) or use --mode paper"
        )
    return f"account:{venue}:{hashlib.sha256(api_key.encode()).hexdigest()[:32]}"


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


class EngineLocks:
    """The locks one engine holds; :meth:`release` (or process exit) frees them."""

    def __init__(self, store: OpsStore):
        self.store = store
        self.host, self.pid = socket.gethostname()[:200], os.getpid()
        self.keys: dict[str, str] = {}  # key -> what it guards, for messages
        self._postgres = store.engine.dialect.name == "postgresql"
        self._conn: Connection | None = None
        self._backend: int | None = None  # the server process of ``_conn``
        self._files: dict[str, IO[str]] = {}

    def acquire(self, key: str, *, what: str) -> None:
        """Take ``key`` (``what`` names it in a refusal) or raise SessionStateError naming the holder."""
        if not (self._take(key) or self._take_from_stale(key)):
            raise SessionStateError(self._refusal(key, what))
        self.keys[key] = what
        self.store.record_lock_holder(key, host=self.host, pid=self.pid)

    def verify(self) -> None:
        """Before every bar and after an outage: every lock still held, or SessionStateError.

        PostgreSQL: the lock connection answers (a server restart, failover or admin kill ends
        it silently while the bar path reconnects on its own); if it does not, the locks are
        taken again. SQLite: each lock file is still the file we locked (a deleted or replaced
        file would let a second engine in); if not, it is locked again."""
        if not self._postgres:
            self._verify_files()
            return
        if self._conn is None:
            return
        try:
            self._conn.execute(text("SELECT 1"))
            self._conn.commit()
            return
        except Exception as exc:
            if not is_connection_error(exc):
                raise
        log.warning("the connection holding the engine locks was lost; taking them again")
        lost = self._backend
        self._drop_connection()
        for key, what in self.keys.items():
            if not (self._take(key) or self._take_from_stale(key, lost_backend=lost)):
                raise SessionStateError(
                    self._refusal(key, what) + " (taken while this engine's lock connection was lost)"
                )
            self.store.record_lock_holder(key, host=self.host, pid=self.pid)

    def _verify_files(self) -> None:
        for key, handle in list(self._files.items()):
            path = self._lock_file(key)
            if path is None or _same_file(handle, path):
                continue
            log.warning("lock file %s was removed or replaced; locking it again", path)
            fcntl.flock(handle, fcntl.LOCK_UN)
            handle.close()
            del self._files[key]
            if not self._take(key):
                raise SessionStateError(
                    self._refusal(key, self.keys[key]) + " (its lock file was replaced while this engine ran)"
                )
            self.store.record_lock_holder(key, host=self.host, pid=self.pid)

    def release(self) -> None:
        for key in list(self.keys):
            try:
                self.store.forget_lock_holder(key, pid=self.pid)
            except Exception as exc:  # noqa: BLE001 - best effort: the lock itself goes below
                log.warning("could not clear the holder of %s: %s", key, exc)
        self.keys.clear()
        self._drop_connection()
        for handle in self._files.values():
            fcntl.flock(handle, fcntl.LOCK_UN)
            handle.close()
        self._files.clear()

    # ------------------------------------------------------------------ mechanics
    def _take(self, key: str) -> bool:
        if self._postgres:
            if self._conn is None:
                self._conn = self.store.engine.connect()
                self._backend = self._conn.execute(
                    text("SELECT pg_backend_pid() FROM set_config('application_name', :n, false)"),
                    {"n": _application_name(self.host, self.pid)},
                ).scalar()
            number = int.from_bytes(_digest(key)[:8], "big", signed=True)
            taken = bool(self._conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": number}).scalar())
            self._conn.commit()
            return taken
        path = self._lock_file(key)
        if path is None:  # an in-memory database: one process, nothing to guard
            return True
        for _ in range(10):  # the file may be removed between open and flock: lock the one at the path
            handle = path.open("a")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                return False
            if _same_file(handle, path):
                self._files[key] = handle
                return True
            handle.close()
        return False

    def _take_from_stale(self, key: str, *, lost_backend: int | None = None, wait_s: float = 10.0) -> bool:
        """The lock is still held by ``lost_backend`` (this engine's lost connection), or for a
        process of this host that has died, the server not having noticed yet: end that server
        process and take the lock. False when a live engine holds it."""
        if self._conn is None:
            return False
        number = int.from_bytes(_digest(key)[:8], "big", signed=True)
        halves = {"hi": (number >> 32) & 0xFFFFFFFF, "lo": number & 0xFFFFFFFF}  # how pg_locks shows a bigint key
        holding = set(
            self._conn.execute(
                text(
                    "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND classid = :hi "
                    "AND objid = :lo "
                    "AND objsubid = 1 AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
                ),
                halves,
            ).scalars()
        )
        holder = self.store.lock_holder(key)
        if lost_backend in holding:
            backends, whose = [lost_backend], "this engine's lost connection"
        elif holder is not None and holder.host == self.host and not _alive(holder.pid):
            app = _application_name(holder.host, holder.pid)
            backends = [
                pid
                for pid in self._conn.execute(
                    text("SELECT pid FROM pg_stat_activity WHERE application_name = :app"), {"app": app}
                ).scalars()
                if pid in holding
            ]
            whose = f"pid {holder.pid}, dead"
        else:
            return False
        if not backends:
            return False
        for backend in backends:
            log.warning("ending server process %s: it holds %s for %s", backend, key, whose)
            self._conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": backend})
        self._conn.commit()
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if self._take(key):
                return True
            time.sleep(0.05)  # the terminated backend lets go within moments
        return False

    def _lock_file(self, key: str) -> Path | None:
        database = self.store.engine.url.database
        if not database or database == ":memory:":
            return None
        db = Path(database)
        return db.with_name(f"{db.name}.{_digest(key).hex()[:16]}.lock")

    def _drop_connection(self) -> None:
        if self._conn is not None:
            try:  # let go now: a closed socket frees the locks only once the server notices
                self._conn.execute(text("SELECT pg_advisory_unlock_all()"))
                self._conn.commit()
            except Exception as exc:  # noqa: BLE001 - it may be dead already
                log.debug("unlocking on the lock connection: %s", exc)
            try:
                self._conn.invalidate()  # closes the socket: the server frees its advisory locks
                self._conn.close()
            except Exception as exc:  # noqa: BLE001 - it may be dead already
                log.debug("closing the lock connection: %s", exc)
            self._conn, self._backend = None, None

    def _refusal(self, key: str, what: str) -> str:
        holder = self.store.lock_holder(key)
        if holder is None:
            by = "another engine (it has not recorded itself yet)"
        else:
            since = holder.since.strftime("%Y-%m-%d %H:%M:%S UTC")
            by = f"another engine: host {holder.host}, pid {holder.pid}, since {since}"
        return (
            f"{what} is already traded by {by}; stop that engine first (Ctrl-C, or kill its pid), or use another --name"
        )


def _same_file(handle: IO[str], path: Path) -> bool:
    """True while ``path`` is still the file ``handle`` has open (not deleted or replaced)."""
    try:
        at_path = os.stat(path)
    except FileNotFoundError:
        return False
    held = os.fstat(handle.fileno())
    return (at_path.st_dev, at_path.st_ino) == (held.st_dev, held.st_ino)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _application_name(host: str, pid: int) -> str:
    """What a lock connection calls itself on the server (at most 63 bytes are kept)."""
    return f"tradeloop-lock {pid} {host}"[:63]
