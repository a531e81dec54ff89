"""Security headers, CORS and the request body limit.

Rules:

1. **Every response** says ``X-Content-Type-Options: nosniff``, ``X-Frame-Options: DENY``,
   ``Referrer-Policy: no-referrer``, ``Cache-Control: no-store`` (unless the endpoint chose its
   own) and ``Content-Security-Policy: default-src 'none'; frame-ancestors 'none'; ...``: an
   API answers data, and nothing in an answer may run, load or be framed in a browser.
2. **The documentation pages** (``/docs``, its OAuth2 redirect, ``/redoc``) are HTML that
   loads Swagger UI or ReDoc from this origin (``api.docs``): their policy allows scripts,
   styles and images from this origin only, and inline scripts only by the SHA-256 of each
   one on the page as served; inline styles and ``data:`` images are allowed (Swagger UI's
   icons, ReDoc's own styles). No CDN: a page that reached the internet would be refused
   (ReDoc's bundle hard-codes the image of its "API docs by Redocly" badge on cdn.redoc.ly:
   refused, and ReDoc drops the image when it fails to load).
3. **Strict-Transport-Security** only when the API is reached over TLS
   (``TRADELOOP_API_BEHIND_TLS``, or a request that arrived as https): a browser that saw it
   over plain http would pin a host that cannot answer https.
4. **CORS is closed** unless ``TRADELOOP_CORS_ORIGINS`` lists origins (exact
   ``scheme://host[:port]``; ``*`` is refused): only those get CORS headers. No credentials
   mode (the API takes bearer tokens and keys, not cookies); the rate-limit headers are
   exposed to the page.
5. **Body limit.** A request declaring a ``Content-Length`` over
   ``TRADELOOP_API_MAX_BODY_BYTES`` is refused with a 413 problem before anything reads it; a
   body without a length (chunked) is counted while it is read and refused with a 413 problem
   once it passes.
"""

from __future__ import annotations

import base64
import hashlib
import re

from fastapi import FastAPI
from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.docs import PAGES as DOCS_PAGES
from api.problems import problem
from tradeloop.errors import ConfigError
from tradeloop.settings import Settings

API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
DOCS_CSP = (
    "default-src 'none'; script-src 'self' {hashes}; style-src 'self' 'unsafe-inline'; font-src 'self'; "
    "img-src 'self' data:; connect-src 'self'; worker-src 'self' blob:; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'self'"
)
HSTS = "max-age=31536000; includeSubDomains"
INLINE_SCRIPT = re.compile(rb"<script(?![^>]*\bsrc\s*=)[^>]*>(.*?)</script>", re.DOTALL | re.IGNORECASE)
ORIGIN = re.compile(r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?")
EXPOSED = ["RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset", "RateLimit-Policy", "Retry-After"]


def route_path(scope: Scope) -> str:
    """The path the app routes: behind a prefix the server puts its ``root_path`` in front."""
    path, root = scope["path"], scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root + "/") else path


def script_hashes(html: bytes) -> str:
    """Rule 2: the CSP sources of the page's inline scripts."""
    return " ".join(
        f"'sha256-{base64.b64encode(hashlib.sha256(body).digest()).decode()}'" for body in INLINE_SCRIPT.findall(html)
    )


class SecurityHeadersMiddleware:
    """Rules 1 to 3."""

    def __init__(self, app: ASGIApp, *, docs_paths: frozenset[str], hsts: bool):
        self.app, self.docs_paths, self.hsts = app, docs_paths, hsts

    def _common(self, scope: Scope, message: Message) -> MutableHeaders:
        headers = MutableHeaders(scope=message)
        headers["X-Content-Type-Options"] = "nosniff"
        headers["X-Frame-Options"] = "DENY"
        headers["Referrer-Policy"] = "no-referrer"
        if "cache-control" not in headers:
            headers["Cache-Control"] = "no-store"
        if self.hsts or scope.get("scheme") == "https":
            headers["Strict-Transport-Security"] = HSTS
        return headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if route_path(scope) not in self.docs_paths:

            async def send_api(message: Message) -> None:
                if message["type"] == "http.response.start":
                    self._common(scope, message)["Content-Security-Policy"] = API_CSP
                await send(message)

            await self.app(scope, receive, send_api)
            return
        start: Message | None = None
        chunks: list[bytes] = []

        async def send_page(message: Message) -> None:  # held until the page is whole: its hashes go first
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
                return
            if message["type"] != "http.response.body" or start is None:
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            page = b"".join(chunks)
            self._common(scope, start)["Content-Security-Policy"] = DOCS_CSP.format(hashes=script_hashes(page))
            await send(start)
            await send({"type": "http.response.body", "body": page})

        await self.app(scope, receive, send_page)


class BodyLimitMiddleware:
    """Rule 5. It must sit inside every ``BaseHTTPMiddleware`` (the audit): the exception it
    raises while FastAPI reads the body must reach FastAPI as it is, not wrapped in an
    exception group by that middleware's task group (FastAPI would call it a 400)."""

    def __init__(self, app: ASGIApp, *, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    def _detail(self, size: str) -> str:
        return (
            f"the request body has {size} bytes; the API reads at most {self.max_bytes} "
            "(TRADELOOP_API_MAX_BODY_BYTES): send less, or split it"
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await problem(413, "Content too large", self._detail(declared))(scope, receive, send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:  # FastAPI answers it through the problem handlers
                    raise HTTPException(413, self._detail(f"more than {self.max_bytes}"))
            return message

        await self.app(scope, counted, send)


def cors_origins(text: str) -> list[str]:
    """Rule 4: the origins of ``TRADELOOP_CORS_ORIGINS``."""
    origins = [o.strip().rstrip("/") for o in text.split(",") if o.strip()]
    for origin in origins:
        if not ORIGIN.fullmatch(origin):
            raise ConfigError(
                f"TRADELOOP_CORS_ORIGINS has {origin!r}; list exact origins such as https://desk.example.com "
                "(scheme, host and port; no '*', no path), or leave it empty to keep CORS closed"
            )
    return origins


def install(app: FastAPI, settings: Settings) -> None:
    """Rules 1 to 5: the headers and CORS outside every middleware added before (call it last),
    the body limit inside all of them."""
    # innermost of the user middlewares (BodyLimitMiddleware's docstring): appended, not inserted
    app.user_middleware.append(Middleware(BodyLimitMiddleware, max_bytes=settings.api_max_body_bytes))
    origins = cors_origins(settings.cors_origins)
    if origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_credentials=False,
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=["Authorization", "X-API-Key", "Content-Type"],
            expose_headers=EXPOSED,
            max_age=600,
        )
    app.add_middleware(SecurityHeadersMiddleware, docs_paths=DOCS_PAGES, hsts=settings.api_behind_tls)
