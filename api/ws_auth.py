"""Who is on a WebSocket: the caller identified at connect time as every REST endpoint
identifies it (``api.deps.authenticate``), and checked again while connected.

A browser cannot set headers on a WebSocket: it offers the subprotocols ``bearer`` and the
access token, and the server answers ``bearer``. Other clients send ``Authorization`` or
``X-API-Key``; ``?token=`` is the last resort (a query string can reach access logs). A
refusal is an accepted connection closed at once with a code and a reason a browser can read
(a refused handshake tells it nothing).
"""

from __future__ import annotations

from fastapi import WebSocket
from fastapi.security import HTTPAuthorizationCredentials

from api.context import ApiContext
from api.deps import Principal, authenticate
from tradeloop.errors import AuthError
from tradeloop.identity import Role

SUBPROTOCOL = "bearer"


def offered_subprotocol(websocket: WebSocket) -> str | None:
    """``bearer`` when the client offered it (the answer it expects), else None."""
    return SUBPROTOCOL if SUBPROTOCOL in (websocket.scope.get("subprotocols") or []) else None


def credentials(websocket: WebSocket) -> tuple[str | None, str | None]:
    """The access token and the API key the client sent (AuthError: more than one token)."""
    tokens = []
    header = websocket.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        tokens.append(header[7:].strip())
    offered = list(websocket.scope.get("subprotocols") or [])
    if SUBPROTOCOL in offered:
        rest = [p for p in offered if p != SUBPROTOCOL]
        if len(rest) != 1:
            raise AuthError("with the 'bearer' subprotocol, offer exactly one other: the access token")
        tokens.append(rest[0])
    if websocket.query_params.get("token"):
        tokens.append(websocket.query_params["token"])
    if len(tokens) > 1:
        raise AuthError("send the access token once: in the Authorization header, the subprotocol or ?token=")
    return (tokens[0] if tokens else None), websocket.headers.get("x-api-key")


def identify(websocket: WebSocket, ctx: ApiContext) -> Principal:
    """The caller, as every REST endpoint identifies it (``api.deps.authenticate``)."""
    token, key = credentials(websocket)
    bearer = HTTPAuthorizationCredentials(scheme="Bearer", credentials=token) if token else None
    return authenticate(websocket, ctx, bearer, key)  # type: ignore[arg-type]  # it reads .state only


def still_valid(ctx: ApiContext, principal: Principal, key: str | None) -> str | None:
    """Why the connection must end now (a disabled account, a changed role, a revoked or
    expired key), or None."""
    try:
        if key is not None:
            ctx.identity.verify_api_key(key, now=ctx.now())
        else:
            user = ctx.identity.user_or_none(principal.user_id)
            if user is None or user.disabled:
                return "the account does not exist or is disabled"
            if Role(user.role) is not principal.role:
                return f"the account's role is now {user.role}; connect again"
    except AuthError as exc:
        return str(exc)
    return None


def reason_text(text: str) -> str:
    """A close reason: at most 123 bytes of UTF-8."""
    return text.encode()[:123].decode(errors="ignore")


async def refuse(websocket: WebSocket, subprotocol: str | None, code: int, reason: str) -> None:
    """Accept only to close at once with ``code`` and ``reason``: a browser can read those,
    not a refused handshake. Nothing else is sent."""
    await websocket.accept(subprotocol=subprotocol)
    await websocket.close(code=code, reason=reason_text(reason))
