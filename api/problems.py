"""Errors as RFC 9457 problem details (``application/problem+json``).

Every error names what was wrong and how to fix it: ``title`` (the kind), ``status``,
``detail`` (the sentence a user reads), and for invalid input ``errors``: one entry per
field with ``field`` (its location, e.g. ``body.risk.max_drawdown``), ``value`` (what was
sent, cut to 200 characters; NaN and Infinity, which JSON cannot hold, as the strings
``'nan'`` and ``'inf'``) and ``fix``. ``tradeloop``'s own errors map to statuses by
class; a value the database refuses to compare or store (``sqlalchemy.exc.DataError``: an
id past the 32-bit columns, text holding a NUL character) is a 422; anything else unexpected
is a 500 whose detail says nothing about the internals (it is logged with the request id).
"""

from __future__ import annotations

import logging
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy.exc import DataError
from starlette.exceptions import HTTPException

from tradeloop.errors import (
    AuthError,
    ConfigError,
    LimitReachedError,
    NotFoundError,
    PermissionDeniedError,
    PromotionRefusedError,
    SessionStateError,
    TradeloopError,
)

log = logging.getLogger(__name__)
MEDIA_TYPE = "application/problem+json"
STATUS = (  # the first class that matches decides
    (AuthError, 401, "Not authenticated"),
    (PermissionDeniedError, 403, "Forbidden"),
    (NotFoundError, 404, "Not found"),
    (SessionStateError, 409, "Conflict"),
    (PromotionRefusedError, 409, "Conflict"),
    (LimitReachedError, 409, "Conflict"),
    (ConfigError, 422, "Invalid value"),
    (TradeloopError, 400, "Bad request"),
)


class FieldProblem(BaseModel):
    field: str = Field(description="where the value was: body.<path>, query.<name>, path.<name> or header.<name>")
    value: Any = Field(default=None, description="what was sent (cut to 200 characters)")
    fix: str = Field(description="what would be accepted")


class Problem(BaseModel):
    """An error response (RFC 9457)."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    errors: list[FieldProblem] | None = None


def problem(
    status: int, title: str, detail: str, *, errors: list[FieldProblem] | None = None, headers=None
) -> JSONResponse:
    body = Problem(title=title, status=status, detail=detail, errors=errors).model_dump(exclude_none=True)
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE, headers=headers)


def _cut(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):  # JSON has no NaN or Infinity
        return repr(value)
    text = repr(value) if not isinstance(value, (str, int, float, bool, type(None))) else value
    return text[:200] if isinstance(text, str) else text


def install(app: FastAPI) -> None:
    """Register the handlers that turn every error into a problem document."""

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            FieldProblem(
                field=".".join(str(p) for p in e.get("loc", ())),
                value=_cut(e.get("input")),
                fix=str(e.get("msg", "invalid value")),
            )
            for e in exc.errors()
        ]
        names = ", ".join(f"{e.field}={e.value!r}" for e in errors[:3])
        return problem(422, "Invalid request", f"{len(errors)} invalid value(s): {names}", errors=errors)

    @app.exception_handler(TradeloopError)
    async def domain(request: Request, exc: TradeloopError) -> JSONResponse:
        status, title = next((s, t) for cls, s, t in STATUS if isinstance(exc, cls))
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        return problem(status, title, str(exc), headers=headers)

    @app.exception_handler(HTTPException)
    async def http(request: Request, exc: HTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else "request refused"
        return problem(exc.status_code, _title(exc.status_code), detail, headers=getattr(exc, "headers", None))

    @app.exception_handler(DataError)
    async def refused_by_database(request: Request, exc: DataError) -> JSONResponse:
        log.warning("%s %s: the database refused a value: %s", request.method, request.url.path, exc.orig)
        detail = (
            "a value in the request cannot be looked up or stored: a number out of range (ids are at most "
            f"{2**31 - 1}) or text holding a NUL character (\\u0000); send it without"
        )
        return problem(422, "Invalid value", detail)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("%s %s failed", request.method, request.url.path)
        return problem(500, "Internal error", "the server failed to answer; the error is logged, try again later")


def _title(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"
