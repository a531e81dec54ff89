"""Where the API's WebSocket events come from (``api.fanout``'s sources).

* :class:`RedisStreams` (``REDIS_URL`` set): the streams the engine's outbox relay writes,
  read with a consumer group of this API process (``ws:<host>:<pid>``): XREADGROUP, then XACK
  once the batch was offered (at least once: what this process read and did not ack, after a
  crash of its reader, is read again from the group's pending entries when the reader
  restarts). Each group is created at the position this process had reached, so one lost
  (Redis restarted, or reaped) is made again without a gap. A process keeps a heartbeat key
  (``<prefix>:ws-reader:<group>``, 60 s); at start it destroys the groups of readers whose
  heartbeat has expired, and at a clean stop its own. Replay is XRANGE.
* :class:`OutboxTable` (no Redis, the embedded default): the in-process bus lives inside each
  engine's process, out of the API's reach, so the API reads the same events from the
  operational database's outbox table, by id. The relay keeps relayed rows a day: a resume
  from further back finds them gone.
* :class:`AuditTable`: the session channel (started, paused, resumed, stopped, finished,
  waiting for an acknowledgement, acknowledged, a symbol halted or resumed) is the sessions'
  audit trail, read by id in either mode: a status change made while no engine runs has no
  outbox row to wait for.

Both tables are polled by id. A row id can commit after a higher one (PostgreSQL allocates ids
before commit): a poll stops at a hole until the row appears or ``gap_wait_s`` has passed
(a rolled-back insert leaves a hole for ever), so no committed row is skipped by a poll.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from typing import Any

from redis.exceptions import ResponseError
from sqlalchemy import func, select

from api.fanout import CHANNEL_OF_STREAM, Emit, Event, channel_data, position
from tradeloop.bus import STREAMS, decode, redis_client, stream_key
from tradeloop.errors import ConfigError
from tradeloop.ops import AuditEvent, OpsStore
from tradeloop.ops.models import OutboxEvent

#: audit events that the session channel carries
SESSION_EVENTS = frozenset(
    {
        "session_started",
        "session_running",
        "session_paused",
        "session_stopped",
        "session_finished",
        "session_acknowledged",
        "session_in_sample",
        "symbol_halted",
        "symbol_resumed",
        "kill_switch_tripped",
        "balance_drift",
        "position_drift",
    }
)
HEARTBEAT_TTL_S = 60


def default_group() -> str:
    return f"ws:{socket.gethostname()}:{os.getpid()}"


class RedisStreams:
    """The engine's Redis streams through a consumer group of this process (module rules)."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str,
        group: str | None = None,
        block_ms: int = 1000,
        batch: int = 100,
        heartbeat_s: float = 20.0,
    ):
        self.url, self.prefix, self.group = url, prefix, group or default_group()
        self.block_ms, self.batch, self.heartbeat_s = block_ms, batch, heartbeat_s
        self.keys: tuple[str, ...] = STREAMS
        self.consumer = "reader"
        self.last: dict[str, str] = {}
        self._client: Any = None
        self._beat_at = 0.0

    def _key(self, stream: str) -> str:
        return stream_key(self.prefix, stream)

    @property
    def _heartbeat_key(self) -> str:
        return stream_key(self.prefix, f"ws-reader:{self.group}")

    async def start(self) -> dict[str, str]:
        self._client = redis_client(self.url)
        await self._beat()
        await self._reap()
        for stream in STREAMS:
            key = self._key(stream)
            await self._create_group(stream, at="$")
            groups = await self._client.xinfo_groups(key)
            mine = next(g for g in groups if g["name"] == self.group)
            self.last[stream] = mine["last-delivered-id"]
        return dict(self.last)

    async def _create_group(self, stream: str, *, at: str) -> None:
        try:
            await self._client.xgroup_create(self._key(stream), self.group, id=at, mkstream=True)
        except ResponseError as exc:  # BUSYGROUP: ours from an earlier life (its pending are reclaimed)
            if "BUSYGROUP" not in str(exc):
                raise

    async def _beat(self) -> None:
        await self._client.set(self._heartbeat_key, str(time.time()), ex=HEARTBEAT_TTL_S)
        self._beat_at = time.monotonic()

    async def _reap(self) -> None:
        """Destroy the groups of API readers whose heartbeat expired (a crashed process's)."""
        for stream in STREAMS:
            try:
                groups = await self._client.xinfo_groups(self._key(stream))
            except ResponseError:  # no such stream yet
                continue
            for group in groups:
                name = group["name"]
                if name.startswith("ws:") and name != self.group:
                    if not await self._client.exists(stream_key(self.prefix, f"ws-reader:{name}")):
                        await self._client.xgroup_destroy(self._key(stream), name)

    async def run(self, emit: Emit) -> None:
        for stream in STREAMS:  # again after a failure: Redis may have lost them
            await self._create_group(stream, at=self.last[stream])
        while True:  # reclaim: what this group was given and never acked (a reader that died)
            if not await self._deliver(await self._read("0", block=None), emit):
                break
        while True:
            if time.monotonic() - self._beat_at >= self.heartbeat_s:
                await self._beat()
            await self._deliver(await self._read(">", block=self.block_ms), emit)

    async def _read(self, start: str, *, block: int | None) -> list:
        try:
            reply = await self._client.xreadgroup(
                self.group, self.consumer, {self._key(s): start for s in STREAMS}, count=self.batch, block=block
            )
        except ResponseError as exc:
            if "NOGROUP" in str(exc):  # reaped while we were away, or Redis restarted: made again
                for stream in STREAMS:
                    await self._create_group(stream, at=self.last[stream])
                return []
            raise
        if isinstance(reply, dict):
            raise ConfigError("REDIS_URL asks for protocol=3 (RESP3); the API reads RESP2 replies: drop protocol=3")
        return reply or []

    async def _deliver(self, reply: list, emit: Emit) -> int:
        """Offer every entry of ``reply``, then ack them; the number of entries."""
        count = 0
        for key, entries in reply:
            stream = key[len(self.prefix) + 1 :]
            events = [self._event(stream, entry_id, fields) for entry_id, fields in entries if fields]
            if events:
                await emit(events)
                self.last[stream] = max(self.last[stream], events[-1].id, key=position)
            if entries:
                await self._client.xack(key, self.group, *[entry_id for entry_id, _ in entries])
            count += len(entries)
        return count

    @staticmethod
    def _event(stream: str, entry_id: str, fields: dict) -> Event:
        entry = decode(entry_id, fields)
        return Event(
            source=stream,
            id=entry_id,
            stream=stream,
            channel=CHANNEL_OF_STREAM[stream],
            session_id=entry.session_id,
            data=channel_data(stream, entry.data),
        )

    async def replay(self, key: str, *, after: str, upto: str, limit: int) -> tuple[list[Event], str | None]:
        entries = await self._client.xrange(self._key(key), min=f"({after}", max=upto, count=limit)
        more = entries[-1][0] if len(entries) == limit else None
        return [self._event(key, entry_id, fields) for entry_id, fields in entries if fields], more

    async def close(self) -> None:
        if self._client is None:
            return
        try:
            for stream in STREAMS:
                await self._client.xgroup_destroy(self._key(stream), self.group)
            await self._client.delete(self._heartbeat_key)
        finally:
            await self._client.aclose()


class _TablePoller:
    """Rows of one table read by id, holes waited for (module rules)."""

    key = ""
    model: Any = None

    def __init__(self, store: OpsStore, *, poll_s: float = 0.25, gap_wait_s: float = 1.0, batch: int = 100):
        self.store, self.poll_s, self.gap_wait_s, self.batch = store, poll_s, gap_wait_s, batch
        self.keys: tuple[str, ...] = (self.key,)
        self.last = 0
        self._hole: tuple[int, float] | None = None  # the missing id, since when (monotonic)

    def _event(self, row: Any) -> Event | None:
        raise NotImplementedError

    def _filter(self, query: Any) -> Any:
        return query

    def _rows(self, after: int, upto: int | None, limit: int) -> list[Any]:
        with self.store.transaction() as db:
            query = select(self.model).where(self.model.id > after)
            if upto is not None:
                query = self._filter(query.where(self.model.id <= upto))
            return list(db.scalars(query.order_by(self.model.id).limit(limit)))

    def _max_id(self) -> int:
        with self.store.transaction() as db:
            return int(db.scalar(select(func.max(self.model.id))) or 0)

    async def start(self) -> dict[str, str]:
        self.last = await asyncio.to_thread(self._max_id)
        return {self.key: str(self.last)}

    async def run(self, emit: Emit) -> None:
        while True:
            rows = await asyncio.to_thread(self._rows, self.last, None, self.batch)
            ready = self._contiguous(rows)
            events = [e for e in (self._event(r) for r in ready) if e is not None]
            if events:
                await emit(events)
            if ready:
                self.last = ready[-1].id
            if len(ready) < self.batch:
                await asyncio.sleep(self.poll_s)

    def _contiguous(self, rows: list[Any]) -> list[Any]:
        """The rows up to the first hole younger than ``gap_wait_s``."""
        out, expected, now = [], self.last + 1, time.monotonic()
        for row in rows:
            if row.id != expected:
                if self._hole is None or self._hole[0] != expected:
                    self._hole = (expected, now)
                if now - self._hole[1] < self.gap_wait_s:
                    break
            out.append(row)
            expected = row.id + 1
        return out

    async def replay(self, key: str, *, after: str, upto: str, limit: int) -> tuple[list[Event], str | None]:
        rows = await asyncio.to_thread(self._rows, int(after), int(upto), limit)
        more = str(rows[-1].id) if len(rows) == limit else None
        return [e for e in (self._event(r) for r in rows) if e is not None], more

    async def close(self) -> None:
        return None


class OutboxTable(_TablePoller):
    """The engine's events from the outbox table (embedded mode, no Redis)."""

    key = "outbox"
    model = OutboxEvent

    def _event(self, row: OutboxEvent) -> Event | None:
        channel = CHANNEL_OF_STREAM.get(row.stream)
        if channel is None:
            return None
        return Event(
            source=self.key,
            id=str(row.id),
            stream=row.stream,
            channel=channel,
            session_id=row.session_id,
            data=channel_data(row.stream, row.payload),
        )


class AuditTable(_TablePoller):
    """The session channel: the sessions' status events from the audit log."""

    key = "audit"
    model = AuditEvent

    def _filter(self, query: Any) -> Any:  # replay reads only the channel's rows
        return query.where(AuditEvent.session_id.is_not(None), AuditEvent.event.in_(SESSION_EVENTS))

    def _event(self, row: AuditEvent) -> Event | None:
        if row.session_id is None or row.event not in SESSION_EVENTS:
            return None
        return Event(
            source=self.key,
            id=str(row.id),
            stream="audit",
            channel="sessions",
            session_id=row.session_id,
            data={"event": row.event, "at": row.at.isoformat() if row.at else None, "detail": row.detail},
        )
