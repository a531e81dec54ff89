"""Where a process's log goes and how it reads: readable text by default, JSON lines for a log
collector (``TRADELOOP_LOG_FORMAT=json``), to stderr or to a rotated file (``TRADELOOP_LOG_FILE``).

Rules:

* Every record goes through the standard ``logging`` module (tradeloop, uvicorn, ccxt, alembic
  alike); structlog renders it (``structlog.stdlib.ProcessorFormatter``), and ``structlog``
  loggers, when used, render through the same handlers.
* Correlation ids are context variables (``structlog.contextvars``): :func:`bound_ids` binds
  them for a block (the engine its ``session``, a create its ``client_order_id``, a job worker
  its ``job_id`` and ``run_id``, the API each request's ``request_id``) and every record made
  inside it, in that thread or task, carries them: a JSON field each, ``[k=v ...]`` at the end
  of a text line.
* No secret in any field: the record factory of ``tradeloop.redaction`` has already masked
  the message and the traceback; the JSON chain runs every event (extras and ids included)
  through :func:`tradeloop.redaction.redact_fields` last, before rendering.
* A JSON line holds ``timestamp`` (UTC, ISO 8601), ``level``, ``logger``, ``event`` (the
  message), ``service`` (engine, api, worker, ...), ``pid``, the bound ids, the record's
  ``extra=`` fields and ``exception`` (the redacted traceback) when there is one.
* ``TRADELOOP_LOG_FILE``: the log goes to that file only (one file per process: two processes
  rotating one file lose lines), rotated at ``TRADELOOP_LOG_MAX_MB`` keeping
  ``TRADELOOP_LOG_BACKUPS`` old files; ``TRADELOOP_LOG_MAX_MB=0`` leaves rotation to
  logrotate (the file is reopened when it has been moved away).
* With nothing set, :func:`configure_logging` is ``logging.basicConfig`` as before: a line
  per record on stderr, the ids appended when some are bound.
"""

from __future__ import annotations

import contextlib
import logging
import logging.handlers
import os
from collections.abc import Iterator, MutableMapping
from typing import Any, cast

import structlog
from structlog.contextvars import bind_contextvars, bound_contextvars, get_contextvars

from tradeloop.redaction import install as install_redaction
from tradeloop.redaction import redact_fields
from tradeloop.settings import Settings

TEXT_FORMAT = "%(levelname)s %(name)s: %(message)s"
#: the loggers uvicorn gives handlers of their own: routed to ours when the format or file is set
UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")
_HANDLER_NAME = "tradeloop"


def bind_ids(**ids: object) -> None:
    """Bind correlation ids to the current context for good (a process's or task's lifetime)."""
    bind_contextvars(**{k: v for k, v in ids.items() if v is not None})


@contextlib.contextmanager
def bound_ids(**ids: object) -> Iterator[None]:
    """Correlation ids on every record made inside the block (None values are left out)."""
    with bound_contextvars(**{k: v for k, v in ids.items() if v is not None}):
        yield


class TextFormatter(logging.Formatter):
    """The plain format, with the bound correlation ids appended as ``[key=value ...]`` (by key)."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        ids = get_contextvars()
        if not ids:
            return line
        head, newline, tail = line.partition("\n")  # after the message, before a traceback
        return f"{head} [{' '.join(f'{k}={v}' for k, v in sorted(ids.items()))}]{newline}{tail}"


def _service(name: str):
    def add(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        event.setdefault("service", name)
        event.setdefault("pid", os.getpid())
        return event

    return add


def _record_exception(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """The traceback the redaction factory already formatted (it keeps ``exc_text``, not ``exc_info``)."""
    record = event.get("_record")
    if record is not None and record.exc_text and "exception" not in event:
        event["exception"] = record.exc_text
    return event


def _redact(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    return cast(dict[str, Any], redact_fields({k: v for k, v in event.items() if not k.startswith("_")}))


def json_formatter(*, service: str) -> structlog.stdlib.ProcessorFormatter:
    """The JSON-lines formatter of the module rules."""
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _service(service),
    ]
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder(), _record_exception],
        processors=[
            structlog.processors.format_exc_info,  # a structlog logger's exc_info=True
            _redact,
            structlog.processors.JSONRenderer(default=str),
        ],
    )


def _handler(settings: Settings) -> logging.Handler:
    if settings.log_file is None:
        return logging.StreamHandler()
    path = settings.log_file.expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    if settings.log_max_mb > 0:
        return logging.handlers.RotatingFileHandler(
            path, maxBytes=int(settings.log_max_mb * 1024 * 1024), backupCount=settings.log_backups, encoding="utf-8"
        )
    return logging.handlers.WatchedFileHandler(path, encoding="utf-8")


def configure_logging(
    settings: Settings, *, service: str, text_format: str = TEXT_FORMAT, uvicorn: bool = False
) -> None:
    """Send this process's log where ``settings`` say, in their format (module rules).

    Parameters
    ----------
    settings
        ``log_level``, ``log_format``, ``log_file``, ``log_max_mb``, ``log_backups``.
    service
        The process's part (``engine``, ``api``, ``worker``, ``cli``): the JSON ``service`` field.
    text_format
        The ``logging`` format of a text line (the command's own, as before).
    uvicorn
        The process is uvicorn's (the API): with neither a JSON format nor a file asked for, its
        own handlers stay as they are.
    """
    install_redaction()
    structured = settings.log_format == "json" or settings.log_file is not None
    root = logging.getLogger()
    if not structured and uvicorn:
        return
    if not structured:  # as before: basicConfig (a no-op when the root already has handlers)
        plain = logging.StreamHandler()
        plain.setFormatter(TextFormatter(text_format))
        logging.basicConfig(level=settings.log_level, handlers=[plain])
        return
    handler = _handler(settings)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(
        json_formatter(service=service) if settings.log_format == "json" else TextFormatter(text_format)
    )
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:  # configured twice: replaced
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(settings.log_level)
    for name in UVICORN_LOGGERS:  # their own stderr handlers would bypass the format and the file
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    if settings.log_format == "json":  # structlog's own loggers, if any, render through the same handler
        _configure_structlog(service)


def _configure_structlog(service: str) -> None:
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.stdlib.add_log_level,
            structlog.stdlib.add_logger_name,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _service(service),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
