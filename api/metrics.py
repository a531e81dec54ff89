"""Prometheus metrics of the API: ``GET /metrics`` (no sign-in, not in the OpenAPI schema; keep
it off the public proxy) and a middleware counting every request by method, route template and
status, with its duration (``tradeloop.observability.service`` names the series).

The middleware is the outermost one we add, so it sees what the client got: a rate limit's
429, a security middleware's refusal, an unhandled error's 500 (counted before Starlette's
own error handler answers it).
"""

from __future__ import annotations

import time

from fastapi import FastAPI
from fastapi.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tradeloop.observability import api_request, exposition, watch_disk
from tradeloop.observability.drift import watch_drift
from tradeloop.settings import Settings

UNMATCHED = "unmatched"  # a path no route serves: one series, whatever was asked


class MetricsMiddleware:
    """Counts and times every HTTP request (module rules); WebSockets pass untouched."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, status = time.perf_counter(), 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = getattr(scope.get("route"), "path", UNMATCHED)
            api_request(method=scope["method"], route=route, status=status, seconds=time.perf_counter() - started)


def install(app: FastAPI, settings: Settings) -> None:
    """``GET /metrics`` and the middleware (add it after every other middleware: outermost)."""
    watch_disk(settings.data_dir)
    watch_drift(settings.research_dir)  # the research pipeline's drift reports
    app.add_middleware(MetricsMiddleware)

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        body, content_type = exposition()
        return Response(body, media_type=content_type)
