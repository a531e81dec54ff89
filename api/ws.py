"""The real-time WebSocket (``GET /ws``): the engine's events, as they happen, to signed-in users.

Signing in, at connect time (one of):

* ``Authorization: Bearer <access token>`` or ``X-API-Key: tl_...`` headers (services);
* the subprotocol pair ``bearer`` and ``<access token>`` (``Sec-WebSocket-Protocol``: what a
  browser can send; the server answers ``bearer``);
* ``?token=<access token>`` (last resort: a query string can reach access logs).

A refused connection is accepted and closed at once with code 4401 (the reason says why)
before any event (``api.ws_auth``); an account disabled or given another role, or an API key
revoked, later closes its sockets with 4401 within ``recheck_s``.

Client messages (JSON):

* ``{"op": "subscribe", "channels": [...], "sessions": [ids]?, "last_id": cursor?}``: channels
  ``prices`` (every session's closes: any signed-in user), ``signals``, ``orders``, ``fills``,
  ``risk`` (denials, kill-switch trips), ``sessions`` (status changes); of the caller's own
  sessions (an admin: every session), narrowed to ``sessions`` when given (another user's id
  is refused as unknown). Replaces the current subscription.
* ``{"op": "resume", "last_id": cursor, ...}``: the same, replaying what was missed since the
  cursor (the ``cursor`` of the last message received; a bare stream event id is accepted too)
  before live events: every event once, in order per stream (streams interleave as they are
  read; an ``id`` is unique within its stream only, so a cursor names a position on each).
  ``?last_id=`` at connect is the ``last_id`` of the first subscription.
* ``{"op": "unsubscribe", "channels": [...]}``, ``{"op": "ping"}``.

Server messages: ``{"type": "event", "channel", "stream", "id", "session_id", "data",
"cursor"}`` (``prices`` carries no session), ``{"type": "subscribed", "channels", "sessions",
"cursor"}``, ``{"type": "replayed", "count", "cursor"}``, ``{"type": "pong"}`` and
``{"type": "error", "detail", "errors"?}`` (a bad message; the socket stays open).

A client that does not keep up (``queue_size`` events waiting) is closed with 1013 and
reconnects with resume; the others never wait for it (``api.fanout``). The events come from
the Redis streams the engine writes or, without Redis, from the outbox table
(``api.event_sources``).
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
from collections import deque
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import FastAPI, WebSocket
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from starlette.websockets import WebSocketDisconnect

from api.context import ApiContext
from api.deps import Principal
from api.event_sources import AuditTable, OutboxTable, RedisStreams
from api.fanout import (
    CHANNELS,
    PUBLIC_CHANNELS,
    Channel,
    Event,
    EventSource,
    Hub,
    Owners,
    channels_of,
    encode_cursor,
    parse_cursor,
    position,
)
from api.ws_auth import identify, offered_subprotocol, reason_text, refuse, still_valid
from tradeloop.errors import AuthError, ConfigError, TradeloopError

log = logging.getLogger(__name__)

UNAUTHORIZED, POLICY, TOO_SLOW, TOO_BIG, UNAVAILABLE = 4401, 1008, 1013, 1009, 1011
WAKE = object()  # queued to wake the sender for a control message
GONE = (WebSocketDisconnect, OSError)  # the client went away (uvicorn's ClientDisconnected is an OSError)


@dataclass(frozen=True, kw_only=True, slots=True)
class WsOptions:
    """How the WebSocket behaves (``app.state.ws_options`` overrides the defaults)."""

    queue_size: int = 1000  # events waiting for a slow client before it is dropped (> a read batch)
    read_batch: int = 100  # events a source reads at once: a burst a connection's queue takes whole
    recheck_s: float = 30.0  # how often the account (and API key) is checked again
    max_message_bytes: int = 65_536
    replay_batch: int = 500
    group: str | None = None  # the Redis consumer group (default ws:<host>:<pid>)
    poll_s: float = 0.25  # the tables' poll interval
    gap_wait_s: float = 1.0  # how long a poll waits for a row id that has not committed
    close_wait_s: float = 10.0  # how long a dropped client's close frame may wait behind unread data

    def __post_init__(self) -> None:
        if not 1 <= self.read_batch < self.queue_size:
            raise ConfigError(
                f"queue_size={self.queue_size}, read_batch={self.read_batch}: a connection's queue must take "
                "a whole read batch (read_batch >= 1 and below queue_size), or a burst drops a fast client"
            )


class _Op(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Subscribe(_Op):
    op: Literal["subscribe"]
    channels: list[Channel] = Field(min_length=1, max_length=len(CHANNELS), examples=[["orders", "fills"]])
    sessions: list[int] | None = Field(default=None, max_length=1000, description="only these sessions")
    last_id: str | None = Field(default=None, max_length=1000, description="resume after this cursor")


class Resume(_Op):
    op: Literal["resume"]
    last_id: str = Field(max_length=1000)
    channels: list[Channel] | None = Field(default=None, min_length=1, max_length=len(CHANNELS))
    sessions: list[int] | None = Field(default=None, max_length=1000)


class Unsubscribe(_Op):
    op: Literal["unsubscribe"]
    channels: list[Channel] = Field(min_length=1, max_length=len(CHANNELS))


class Ping(_Op):
    op: Literal["ping"]


OPS: TypeAdapter[Subscribe | Resume | Unsubscribe | Ping] = TypeAdapter(
    Annotated[Subscribe | Resume | Unsubscribe | Ping, Field(discriminator="op")]
)


DEFAULT_OPTIONS = WsOptions()


def options(app: FastAPI) -> WsOptions:
    return getattr(app.state, "ws_options", None) or DEFAULT_OPTIONS


async def hub_of(app: FastAPI) -> Hub:
    """The process's hub, started by the first connection (an API without WebSocket clients
    reads nothing)."""
    lock = getattr(app.state, "ws_hub_lock", None)
    if lock is None:
        lock = app.state.ws_hub_lock = asyncio.Lock()
    async with lock:
        hub = getattr(app.state, "ws_hub", None)
        if hub is None:
            hub = make_hub(app.state.context, options(app))
            try:  # in a fresh context, as its readers (``Hub.start``)
                await asyncio.create_task(hub.start(), context=contextvars.Context())
            except BaseException:
                await hub.stop()
                raise
            app.state.ws_hub = hub
        return hub


def make_hub(ctx: ApiContext, opts: WsOptions) -> Hub:
    """Redis streams when ``REDIS_URL`` is set, else the outbox table; and the audit log."""
    events: EventSource
    if ctx.settings.redis_url:
        events = RedisStreams(
            ctx.settings.redis_url, prefix=ctx.settings.redis_prefix, group=opts.group, batch=opts.read_batch
        )
    else:
        events = OutboxTable(ctx.store, poll_s=opts.poll_s, gap_wait_s=opts.gap_wait_s, batch=opts.read_batch)
    audit = AuditTable(ctx.store, poll_s=opts.poll_s, gap_wait_s=opts.gap_wait_s, batch=opts.read_batch)
    return Hub([events, audit], owners=Owners(ctx.store))


async def stop_hub(app: FastAPI) -> None:
    hub = getattr(app.state, "ws_hub", None)
    if hub is not None:
        app.state.ws_hub = None
        await hub.stop()


async def serve(websocket: WebSocket) -> None:
    """One connection, from the handshake to its close."""
    app, ctx = websocket.app, websocket.app.state.context
    subprotocol = offered_subprotocol(websocket)
    try:
        principal = await asyncio.to_thread(identify, websocket, ctx)
    except TradeloopError as exc:
        await refuse(websocket, subprotocol, UNAUTHORIZED if isinstance(exc, AuthError) else POLICY, str(exc))
        return
    try:
        hub = await hub_of(app)
    except Exception as exc:  # noqa: BLE001 - Redis or the database away: the client retries
        log.warning("websocket events unavailable: %s: %s", type(exc).__name__, exc)
        await refuse(websocket, subprotocol, UNAVAILABLE, "events are unavailable now; try again shortly")
        return
    resume = websocket.query_params.get("last_id")
    try:
        start = parse_cursor(resume, hub.keys) if resume else None
    except TradeloopError as exc:
        await refuse(websocket, subprotocol, POLICY, str(exc))
        return
    await websocket.accept(subprotocol=subprotocol)
    key = websocket.headers.get("x-api-key") if principal.api_key_id is not None else None
    await Connection(websocket, principal, hub, options(app), ctx=ctx, key=key, start=start).run()


class Connection:
    """One client: its subscription, its bounded queue, and the one task that sends to it."""

    def __init__(
        self,
        websocket: WebSocket,
        principal: Principal,
        hub: Hub,
        opts: WsOptions,
        *,
        ctx: ApiContext,
        key: str | None,
        start: dict[str, str] | None,
    ):
        self.ws, self.principal, self.hub, self.opts, self.ctx, self.key = websocket, principal, hub, opts, ctx, key
        self.queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=opts.queue_size)
        self.channels: frozenset[str] = frozenset()
        self.sessions: frozenset[int] | None = None
        self.pos: dict[str, str] = {}
        self.start = start  # ?last_id=, for the first subscription
        self.control: deque[dict] = deque()  # messages and replays for the sender, in order
        self.ending: tuple[int, str] | None = None
        self._ended = asyncio.Event()

    # ------------------------------------------------------------------ the hub's side
    def offer(self, event: Event) -> None:
        if self.ending is None and self.visible(event):
            try:
                self.queue.put_nowait(event)
            except asyncio.QueueFull:
                self.end(TOO_SLOW, f"too slow: {self.queue.maxsize} events unread; reconnect with resume")

    def visible(self, event: Event) -> bool:
        if event.channel not in self.channels:
            return False
        if event.channel in PUBLIC_CHANNELS:
            return True
        if self.sessions is not None and event.session_id not in self.sessions:
            return False
        return self.principal.can_see(event.owner_id)

    def end(self, code: int, reason: str) -> None:
        if self.ending is None:
            self.ending = (code, reason)
            self._ended.set()
            log.info("websocket of %s closed with %d: %s", self.principal.actor, code, reason)

    # ------------------------------------------------------------------ the connection's tasks
    async def run(self) -> None:
        self.pos = self.hub.join(self)
        tasks = [asyncio.create_task(t) for t in (self._send_loop(), self._read_loop(), self._watch())]
        ended = asyncio.create_task(self._ended.wait())
        try:
            await asyncio.wait([*tasks, ended], return_when=asyncio.FIRST_COMPLETED)
        finally:
            self.hub.leave(self)
            for task in (*tasks, ended):
                task.cancel()
            results = await asyncio.gather(*tasks, return_exceptions=True)
        for result in results:
            if isinstance(result, Exception) and not isinstance(result, GONE):
                log.warning("websocket of %s failed: %s: %s", self.principal.actor, type(result).__name__, result)
        if self.ending is not None:
            code, reason = self.ending
            try:  # queued behind what the client has not read: it may never take it, and then
                # the transport is closed after what it holds
                await asyncio.wait_for(self.ws.close(code=code, reason=reason_text(reason)), self.opts.close_wait_s)
            except (TimeoutError, RuntimeError, *GONE):  # RuntimeError: closed already
                pass

    async def _read_loop(self) -> None:
        while True:
            message = await self.ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            if text is None:
                await self._error("send JSON text frames, not binary")
                continue
            if len(text) > self.opts.max_message_bytes:
                self.end(TOO_BIG, f"a message is at most {self.opts.max_message_bytes} bytes")
                return
            await self._handle(text)

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.opts.recheck_s)
            why = await asyncio.to_thread(still_valid, self.ctx, self.principal, self.key)
            if why is not None:
                self.end(UNAUTHORIZED, why)
                return

    async def _handle(self, text: str) -> None:
        try:
            op = OPS.validate_json(text)
        except ValidationError as exc:
            errors = [
                {"field": ".".join(str(p) for p in e["loc"]) or "op", "value": _cut(e.get("input")), "fix": e["msg"]}
                for e in exc.errors()
            ]
            await self._error(f"{len(errors)} invalid value(s) in the message", errors=errors)
            return
        try:
            if isinstance(op, Ping):
                self._tell({"type": "pong"})
            elif isinstance(op, Unsubscribe):
                self.channels = self.channels - set(op.channels)
                self._tell(self._subscribed())
            else:
                await self._subscribe(op)
        except TradeloopError as exc:
            await self._error(str(exc))

    async def _subscribe(self, op: Subscribe | Resume) -> None:
        last_id, start = op.last_id, None
        if isinstance(op, Subscribe) and last_id is None and self.start is not None:
            start, self.start = self.start, None
        elif last_id:
            start = parse_cursor(last_id, self.hub.keys)
        sessions = frozenset(op.sessions) if op.sessions is not None else None
        if sessions:
            await self._check_sessions(sessions)
        channels = op.channels if op.channels is not None else (self.channels or CHANNELS)
        self.channels, self.sessions = frozenset(channels), sessions
        self._tell(self._subscribed(start))
        if start is not None:
            self.control.append({"replay": start})
            self._wake()

    async def _check_sessions(self, sessions: frozenset[int]) -> None:
        """Refuse a session that does not exist or is another user's (the same answer)."""
        found = await self.hub.owners.exists(sessions)
        for session_id in sorted(sessions):
            if session_id not in found or not self.principal.can_see(self.hub.owners.cached(session_id)):
                raise TradeloopError(f"sessions: session {session_id} does not exist; subscribe to your own")

    def _subscribed(self, start: dict[str, str] | None = None) -> dict:
        return {
            "type": "subscribed",
            "channels": sorted(self.channels, key=CHANNELS.index),
            "sessions": sorted(self.sessions) if self.sessions is not None else None,
            "cursor": encode_cursor({**self.pos, **(start or {})}),
        }

    def _tell(self, message: dict) -> None:
        self.control.append(message)
        self._wake()

    def _wake(self) -> None:
        try:
            self.queue.put_nowait(WAKE)
        except asyncio.QueueFull:
            self.end(TOO_SLOW, f"too slow: {self.queue.maxsize} events unread; reconnect with resume")

    async def _error(self, detail: str, *, errors: list[dict] | None = None) -> None:
        self._tell({"type": "error", "detail": detail, **({"errors": errors} if errors else {})})

    # ------------------------------------------------------------------ the sender (the one writer)
    async def _send_loop(self) -> None:
        while True:
            while self.control:
                item = self.control.popleft()
                if "replay" in item:
                    await self._replay(item["replay"])
                else:
                    await self.ws.send_text(json.dumps(item))
            item = await self.queue.get()
            if item is not WAKE:
                await self._send(item)

    async def _send(self, event: Event) -> bool:
        """Send ``event`` unless it was sent already or is no longer subscribed; whether sent."""
        if position(event.id) <= position(self.pos[event.source]) or not self.visible(event):
            return False
        self.pos[event.source] = event.id
        await self.ws.send_text(f'{event.text},"cursor":"{encode_cursor(self.pos)}"}}')
        return True

    async def _replay(self, start: dict[str, str]) -> None:
        """Every event of the subscription after ``start`` up to what the hub has offered
        (later ones are in the queue), then a ``replayed`` message."""
        boundary = dict(self.hub.positions)
        self.pos.update(start)
        sent = 0
        for key in self.hub.keys:
            if not self.channels & channels_of(key):
                continue  # left where the cursor was: a later resume with the channel replays it
            after: str | None = self.pos[key]
            upto = boundary[key]
            while after is not None and position(after) < position(upto):
                batch, after = await self.hub.replay(key, after=after, upto=upto, limit=self.opts.replay_batch)
                for event in batch:
                    sent += await self._send(event)
            if position(upto) > position(self.pos[key]):
                self.pos[key] = upto
        await self.ws.send_text(json.dumps({"type": "replayed", "count": sent, "cursor": encode_cursor(self.pos)}))


def _cut(value: Any) -> Any:
    text = value if isinstance(value, (str, int, float, bool, type(None))) else repr(value)
    return text[:200] if isinstance(text, str) else text
