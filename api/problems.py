"""Errors as RFC 9457 problem details (``application/problem+json``).

Every error names what was wrong and how to fix it: ``title`` (the kind), ``status``,
``detail`` (the sentence a user reads), and for invalid input ``errors``: one entry per
field with ``field`` (its location, e.g. ``body.risk.max_drawdown``), ``value`` (what was
sent, cut to 200 characters; NaN and Infinity, which JSON cannot hold, as the strings
``'nan'`` and ``'inf'``) and ``fix``. ``tradeloop``'s own errors map to statuses by
class; a value the database refuses to compare or store (``sqlalchemy.exc.DataError``: an
id past the 32-bit columns, text holding a NUL character) is a 422; anything else unexpected
is a 500 whose detail says nothing about the internals (it is logged with the request id).

The OpenAPI schema names the problems each operation may answer (:func:`document`), each
as ``application/problem+json`` with the ``Problem`` schema: 401 and 403 where a credential
is needed (and where a router declares them: the password routes), 404 where the path names
a resource, 409 where a signed-in caller changes something (the resource's state may not
allow it), 422 where there is input, 400 and 413 where there is a body (unreadable, too
large), and 429 everywhere (``api.ratelimit``).
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping
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
    NotConfiguredError,
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
    (NotConfiguredError, 503, "Service unavailable"),
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


SECRET_FIELD = re.compile(r"(^|_)(password|passphrase|secret|api_?key|token)($|_)", re.IGNORECASE)


def _shown(error: Mapping[str, Any]) -> Any:
    """What a validation error may echo of the value it refused: never a secret (a field whose
    name says password, passphrase, secret, API key or token, wherever it stands in the path),
    never a whole body or object (a missing field's input is the body around it, which may hold
    one), only a scalar."""
    if error.get("type") == "missing":
        return None
    if any(SECRET_FIELD.search(str(part)) for part in error.get("loc", ())):
        return "[redacted]"
    value = error.get("input")
    if isinstance(value, (dict, list, tuple)):
        return f"<{type(value).__name__} of {len(value)}>"
    return _cut(value)


def install(app: FastAPI) -> None:
    """Register the handlers that turn every error into a problem document, and document them."""
    document(app)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            FieldProblem(
                field=".".join(str(p) for p in e.get("loc", ())),
                value=_shown(e),
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


PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
DOCUMENTED = {  # status -> why an operation answers it (rules in the module docstring)
    400: "the body could not be read (not UTF-8 text, or not the declared content type)",
    401: "not signed in, or the credential (token, API key, password) is refused",
    403: "the caller's role or the key's scopes do not allow this (or password sign-in is off)",
    404: "what the path names does not exist, or is another user's",
    409: "the resource's state does not allow this (a session's status, a champion, a name taken)",
    413: "the request body is larger than TRADELOOP_API_MAX_BODY_BYTES",
    422: "a value is invalid: errors names each field, the value and the fix",
}


def document(app: FastAPI) -> None:
    """Make ``app.openapi()`` name every problem an operation may answer (module docstring)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = generate()
        for path, item in schema.get("paths", {}).items():
            for method, operation in item.items():
                _document(operation, path=path, method=method)
        schemas = schema.setdefault("components", {}).setdefault("schemas", {})
        for name in ("HTTPValidationError", "ValidationError"):  # FastAPI's 422, never answered here
            schemas.pop(name, None)
        if "Problem" not in schemas:
            schemas["Problem"] = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
            schemas["FieldProblem"] = schemas["Problem"].pop("$defs")["FieldProblem"]
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _document(operation: dict[str, Any], *, path: str, method: str) -> None:
    """Add the statuses the module docstring names; a router may declare more (``responses``)."""
    responses = operation.setdefault("responses", {})
    signed_in = "security" in operation
    wanted = {
        400: "requestBody" in operation,
        401: signed_in,
        403: signed_in,
        404: "{" in path,
        409: signed_in and method != "get",
        413: "requestBody" in operation,
        422: bool(operation.get("parameters") or operation.get("requestBody")),
    }
    for status, why in DOCUMENTED.items():
        if wanted[status] or str(status) in responses:
            response = responses.setdefault(str(status), {})
            if response.get("description") in (None, "", _title(status), "Validation Error"):  # FastAPI's own
                response["description"] = why
    for status, response in responses.items():
        if status == "429" or (status.isdigit() and int(status) in DOCUMENTED):  # problems, whatever FastAPI wrote
            response["content"] = {MEDIA_TYPE: {"schema": PROBLEM_REF}}


def _title(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"
