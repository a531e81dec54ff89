"""Secrets never reach a log: every log record is redacted when it is created.

Rules:

* Every secret value handed to :func:`register_secret` (exchange API keys, secrets and
  passphrases: :func:`tradeloop.data.exchanges.make_exchange` registers them) is replaced by
  ``***`` wherever it appears in a record's message, arguments or exception text, at any level,
  in any logger (ccxt's own DEBUG line with the request headers included).
* Values after names that carry credentials (``X-MBX-APIKEY``, ``apiKey``, ``secret``,
  ``signature``, ``password``, ``passphrase``, ``token``, ``Authorization``) are masked too,
  in ``name=value``, ``name: value`` and ``'name': 'value'`` form, so a key the process never
  registered (one typed into a URL, say) is still hidden.
* The redaction is installed as the logging module's record factory, so it holds for every
  handler, including ones added later (``basicConfig``, pytest's capture). ccxt's ``verbose``
  mode prints with ``print``: clients built by ``make_exchange`` route it through logging.
* Structured fields (a JSON log line's extras and correlation ids, a structlog event dict):
  :func:`redact_fields` masks the whole value of any key whose name carries credentials
  (``exchange_secret``, ``access_token``, ``X-API-Key``) and redacts every string inside
  the rest, nested dicts and lists included. ``tradeloop.logs`` runs every event through it
  before rendering.
"""

from __future__ import annotations

import logging
import re
import threading

MASK = "***"
_MIN_SECRET_LEN = 4  # shorter values would mask ordinary words
_NAMES = r"x-mbx-apikey|api[-_]?key|apikey|secret|signature|password|passphrase|token|authorization|x-api-key"
_PATTERN = re.compile(rf"""(?P<name>["']?(?:{_NAMES})["']?\s*[:=]\s*["']?)(?P<value>[^"'\s,&}}]+)""", re.IGNORECASE)
_SECRET_KEY = re.compile(rf"(?:{_NAMES})", re.IGNORECASE)  # a structured field named so: all masked

# user:password@ after the scheme; the password runs to the last "@" (it may hold "/" or ":"). The
# scheme may follow a restic backend's name (rest:https://user:password@host/)
_URL_PASSWORD = re.compile(r"(?P<head>^(?:[A-Za-z0-9]+:)?[^:/@]*://[^:/@]*:)(?P<password>.*)@(?=[^@]*$)", re.DOTALL)
# loggers whose formatter unpacks the arguments (uvicorn's access log: client, method, path,
# version, status): each argument is redacted in place rather than folded into the message
_ARGS_READ_ONE_BY_ONE = frozenset({"uvicorn.access"})
_lock = threading.Lock()
_secrets: set[str] = set()
_installed = False


def register_secret(*values: str | None) -> None:
    """Mask these values in every log record from now on (and install the redaction)."""
    with _lock:
        _secrets.update(v for v in values if v and len(v) >= _MIN_SECRET_LEN)
    install()


def redact(text: str) -> str:
    """``text`` with every registered secret and every credential-named value masked."""
    for secret in sorted(_secrets, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, MASK)
    return _PATTERN.sub(lambda m: m.group("name") + MASK, text)


def redact_fields(value: object) -> object:
    """``value`` with every secret masked (module rules): a mapping's values under a
    credential-named key become ``***``, strings are redacted, lists, tuples and mappings are
    walked; numbers and other values pass unchanged (a ``str()`` of them is the renderer's)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {
            key: MASK if isinstance(key, str) and _SECRET_KEY.search(key) else redact_fields(item)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        items = [redact_fields(item) for item in value]
        return tuple(items) if isinstance(value, tuple) else items
    return value


def mask_url(url: str) -> str:
    """``url`` with its password as ``***`` (``scheme://user:pw@host``, ``redis://:pw@host``),
    also when the URL does not parse or the password holds ``/``, ``:`` or ``@``."""
    return _URL_PASSWORD.sub(lambda m: m.group("head") + "***@", url)


def url_password(url: str) -> str | None:
    """The password of ``url`` as :func:`mask_url` sees it (None when it has none)."""
    found = _URL_PASSWORD.match(url)
    return found.group("password") if found else None


def install() -> None:
    """Redact every log record at creation (idempotent)."""
    global _installed
    with _lock:
        if _installed:
            return
        previous = logging.getLogRecordFactory()

        def factory(*args, **kwargs) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            if isinstance(record.msg, dict):  # a structlog event on its way to its formatter
                record.msg = redact_fields(record.msg)
            elif record.name in _ARGS_READ_ONE_BY_ONE and isinstance(record.args, tuple):
                record.msg = redact(str(record.msg))
                record.args = tuple(a if isinstance(a, int | float) else redact(str(a)) for a in record.args)
            else:
                try:
                    message = record.getMessage()
                except Exception:  # noqa: BLE001 - a bad format string: redact what is there
                    message = f"{record.msg} {record.args}"
                record.msg, record.args = redact(message), None
            if record.exc_info and record.exc_info[1] is not None:
                record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
                record.exc_info = None
            return record

        logging.setLogRecordFactory(factory)
        _installed = True


def route_print_to_log(logger: logging.Logger):
    """A replacement for ccxt's ``Exchange.log`` (which prints): the same text, logged at
    DEBUG through ``logger`` and therefore redacted."""

    def log(*args: object) -> None:
        logger.debug(" ".join(str(a) for a in args))

    return log
