"""Liveness and readiness, for a load balancer or a supervisor (no sign-in)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import text

from api.deps import Context

router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: str
    checks: dict[str, str] = {}


@router.get("/health", response_model=Health, summary="The process answers")
def health() -> Health:
    return Health(status="ok")


@router.get("/ready", response_model=Health, summary="The database (and Redis, when configured) answer",
            responses={503: {"model": Health}})  # fmt: skip
def ready(ctx: Context):
    checks: dict[str, str] = {}
    try:
        with ctx.store.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:  # noqa: BLE001 - reported, never raised
        checks["database"] = f"failed: {type(exc).__name__}"
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
