"""Every mutating request (POST, PUT, PATCH, DELETE) writes an audit row with its actor.

The row (``audit_log``, event ``api_request``) names the actor (the principal's username,
and the API key's id when one was used; ``anonymous`` before sign-in), the method, the path
template (``/sessions/{session_id}/stop``: no secrets or ids in free text), the path
parameters and the response status: refused attempts are recorded too. Bodies are never
recorded (they may hold passwords or keys).
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request, Response
from starlette.concurrency import run_in_threadpool

from tradeloop.ops import OpsStore

log = logging.getLogger(__name__)
MUTATING = {"POST", "PUT", "PATCH", "DELETE"}


def install(app: FastAPI) -> None:
    @app.middleware("http")
    async def audit(request: Request, call_next) -> Response:
        response = await call_next(request)
        if request.method in MUTATING:
            principal = getattr(request.state, "principal", None)
            route = request.scope.get("route")
            detail = {
                "method": request.method,
                "path": getattr(route, "path", request.url.path)[:200],
                "params": {k: str(v)[:100] for k, v in request.path_params.items()},
                "status": response.status_code,
            }
            actor = principal.actor if principal else "anonymous"
            try:
                await run_in_threadpool(_write, request.app.state.context.store, detail, actor)
            except Exception:  # the answer is given; a lost audit row is logged loudly
                log.exception("audit row of %s %s not written", request.method, detail["path"])
        return response


def _write(store: OpsStore, detail: dict, actor: str) -> None:
    with store.transaction() as db:
        OpsStore.audit(db, "api_request", detail=detail, actor=actor)
