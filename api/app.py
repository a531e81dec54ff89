"""The FastAPI application: ``create_app()`` (``uvicorn --factory api.app:create_app``).

OpenAPI documentation is served at ``/docs`` and ``/redoc`` with no CDN (``api.docs``) and the
schema at ``/openapi.json``; every error is a problem document (``api.problems``); every
mutating request is audited (``api.audit``).
"""

from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import FastAPI

from api import audit, docs, metrics, problems, ratelimit, request_id, security
from api.context import ApiContext
from api.routers import (
    auth,
    challengers,
    credentials,
    health,
    jobs,
    keys,
    market_data,
    models,
    prices,
    records,
    sessions,
    signals,
    stream,
    thresholds,
    users,
    venues,
)
from tradeloop.logs import configure_logging
from tradeloop.settings import Settings, get_settings

DESCRIPTION = """REST access to tradeloop for a team: sessions, orders, fills, positions, equity,
the audit log, models, thresholds, backtests and research runs, market data and signals.

Sign in with `POST /auth/login` and send `Authorization: Bearer <access_token>`, or send a
service's `X-API-Key`. Roles: **viewer** reads, **trader** also acts on sessions and jobs,
**admin** also manages users and models. Errors are RFC 9457 problem documents.
"""


def create_app(settings: Settings | None = None, *, context: ApiContext | None = None) -> FastAPI:
    """The API over ``context`` (default: the stores ``settings`` names)."""
    if context is None:  # the served app (uvicorn --factory): TRADELOOP_LOG_FORMAT / _FILE, request ids
        configure_logging(settings or get_settings(), service="api", uvicorn=True)
    ctx = context or ApiContext.from_settings(settings or get_settings())

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        await app.state.rate_limiter.close()
        if context is None:  # ours to close
            ctx.store.close()

    app = FastAPI(
        title="tradeloop", version="1", description=DESCRIPTION, lifespan=lifespan, docs_url=None, redoc_url=None
    )
    app.state.context = ctx
    problems.install(app)
    audit.install(app)
    ratelimit.install(app, ctx.settings)  # inside the security middlewares: its 429s get their headers
    security.install(app, ctx.settings)
    docs.install(app)  # Swagger UI and ReDoc from our own assets
    metrics.install(app, ctx.settings)  # GET /metrics; its middleware counts what clients got
    app.add_middleware(request_id.RequestIdMiddleware)  # outermost: X-Request-ID, request_id on every log line
    for router in (
        health.router,
        auth.router,
        users.router,
        keys.router,
        credentials.router,
        sessions.router,
        records.router,
        models.router,
        thresholds.router,
        challengers.router,
        market_data.router,
        prices.router,
        signals.router,
        venues.router,
        jobs.router,
        stream.router,
    ):
        app.include_router(router)
    return app
