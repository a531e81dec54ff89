"""A request id for every HTTP request: the client's ``X-Request-ID`` when it sends a usable one
(1 to 128 letters, digits, ``-``, ``_``, ``.``, ``:``; a proxy in front usually sets it), else
a new random one. It is bound into the log context (``request_id`` on every record made while
the request runs: ``tradeloop.logs``) and sent back in the response's ``X-Request-ID``, so a
client's report, the proxy's access line and the API's log lines can be matched up.
WebSockets get one for their whole connection.

The id is bound for the rest of the request's task, not reset when the app returns: the
handler of an unexpected error (``api.problems``) runs after that, in Starlette's outermost
middleware, and its traceback must carry the id. The server runs each request in a task of
its own (a copy of the context), and the next request binds its own id first.
"""

from __future__ import annotations

import re
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tradeloop.logs import bind_ids

HEADER = "X-Request-ID"
_USABLE = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def request_id_of(scope: Scope) -> str:
    """The client's request id when usable (module rules), else a new one."""
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            given = value.decode("latin-1")
            if _USABLE.fullmatch(given):
                return given
            break
    return uuid.uuid4().hex


class RequestIdMiddleware:
    """Binds the request id for the request and echoes it in the response (module rules)."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        request_id = request_id_of(scope)
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"x-request-id"]
                message = {**message, "headers": [*headers, (b"x-request-id", request_id.encode("latin-1"))]}
            await send(message)

        bind_ids(request_id=request_id)  # not reset: module rules
        await self.app(scope, receive, send_with_id)
