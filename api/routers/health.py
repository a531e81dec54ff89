"""Liveness and readiness, for a load balancer, a container's health check or a supervisor
(no sign-in, not rate limited by role).

* ``GET /health`` (liveness): the process answers. It checks nothing else, so a database
  outage never gets a healthy API restarted; restart on this one only.
* ``GET /ready`` (readiness): the operational database answers, its schema is at this code's
  latest migration (an API over an older schema fails on the first request that reads a
  new column: migrate, or wait for the process that does), and Redis answers when
  ``REDIS_URL`` is set. 503 with each check's state otherwise: take the process out of the
  proxy's rotation until it is 200 again (``tradeloop up`` and the containers wait for it).
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import text

from api.deps import Context
from tradeloop.ops.database import schema_behind

router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: str
    checks: dict[str, str] = {}


@router.get("/health", response_model=Health, summary="Liveness: the process answers (nothing else is checked)")
def health() -> Health:
    return Health(status="ok")


@router.get("/ready", response_model=Health, responses={503: {"model": Health}},
            summary="Readiness: the database answers at the latest migration, and Redis when configured")  # fmt: skip
def ready(ctx: Context):
    checks: dict[str, str] = {}
    try:
        with ctx.store.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        checks["database"] = "ok"
        behind = schema_behind(ctx.store.engine)
        checks["migrations"] = "ok" if behind is None else f"behind: at {behind[0]}, latest {behind[1]}"
    except Exception as exc:  # noqa: BLE001 - reported, never raised
        checks["migrations" if "database" in checks else "database"] = f"failed: {type(exc).__name__}"
    if ctx.settings.redis_url:
        import redis

        try:
            client = redis.Redis.from_url(ctx.settings.redis_url, socket_timeout=2, socket_connect_timeout=2)
            client.ping()
            client.close()
            checks["redis"] = "ok"
        except Exception as exc:  # noqa: BLE001
            checks["redis"] = f"failed: {type(exc).__name__}"
    ok = all(v == "ok" for v in checks.values())
    body = Health(status="ok" if ok else "unavailable", checks=checks)
    return body if ok else JSONResponse(body.model_dump(), status_code=503)
