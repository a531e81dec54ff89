"""The one exception hierarchy of tradeloop.

Every error says what went wrong, with which value, and how to fix it. Each class carries
the process exit code the CLI uses for it, so scripts can tell failures apart.
"""

from __future__ import annotations


class TradeloopError(Exception):
    """Base class of every error raised on purpose by tradeloop."""

    exit_code: int = 1


class ConfigError(TradeloopError, ValueError):
    """A setting or option has a value that cannot work."""

    exit_code = 2


class DataError(TradeloopError):
    """Market data is missing, malformed or inconsistent."""

    exit_code = 3


class CandleValidationError(DataError, ValueError):
    """Candles broke a validation rule; nothing was written.

    ``violations`` lists ``(row, rule, detail)`` for the first offending rows.
    """

    def __init__(self, message: str, *, source: str, violations: list[tuple[int, str, str]]):
        super().__init__(message)
        self.source = source
        self.violations = violations


class CandleConflictError(DataError):
    """New candles disagree with candles already stored for the same timestamps."""


class SeriesNotFoundError(DataError, LookupError):
    """No candles are stored for the requested exchange/symbol/timeframe."""


class ExchangeError(TradeloopError):
    """The exchange could not be reached or refused a request."""

    exit_code = 4


class UnknownExchangeError(ExchangeError, ValueError):
    """The exchange id is not one ccxt knows."""


class UnknownSymbolError(ExchangeError, ValueError):
    """The exchange does not list the symbol."""


class UnsupportedTimeframeError(ExchangeError, ValueError):
    """The exchange (or tradeloop) does not support the timeframe."""


class RetryExhaustedError(ExchangeError):
    """A retryable request kept failing after every allowed attempt."""


class BacktestError(TradeloopError):
    """A backtest was asked for something it cannot simulate."""

    exit_code = 5


class PortfolioError(TradeloopError, ValueError):
    """A fill, price or cash flow the portfolio cannot apply (non-finite, non-positive quantity or price)."""


class ModelError(TradeloopError):
    """A threshold model or registry operation cannot go on (missing, stale, bad input)."""

    exit_code = 6


class ArtifactIntegrityError(ModelError):
    """A stored artifact's bytes no longer match its content hash: it was corrupted or tampered."""


class PromotionRefusedError(ModelError):
    """The promotion gate refused a candidate; the report lists every check and its number."""


class RiskError(TradeloopError, ValueError):
    """The risk engine was given what it cannot judge (bars out of order, a stored risk state
    that does not parse). A denied order is a verdict, never this error."""

    exit_code = 9


class LiveError(TradeloopError):
    """The live engine cannot go on (session state, broker, feed)."""

    exit_code = 8


class SessionStateError(LiveError, ValueError):
    """A trading session does not exist, already exists, or cannot make that transition."""


class BrokerError(LiveError):
    """The broker refused or could not take an order."""


class OrderOutcomeUnknown(BrokerError):
    """An order's create request timed out and querying did not find it yet: never resend it."""


class VenueUnreachableError(BrokerError):
    """The venue could not be asked (every try of a read failed): nothing is concluded from it."""


class OrderStateError(LiveError, ValueError):
    """An order status change the order state machine does not allow (``tradeloop.trading``)."""


class FeedStaleError(LiveError):
    """A market-data feed delivered nothing for longer than its staleness limit."""


class BackupError(TradeloopError):
    """A backup or restore failed (pg_dump, pg_restore or restic refused, ran out of time, or a
    restored database differs from its backup's manifest); nothing was left half-restored."""

    exit_code = 15


class AuthError(TradeloopError):
    """Who is asking could not be established: a missing, expired, forged or revoked token or
    key, or a wrong password (the API answers 401)."""

    exit_code = 11


class PermissionDeniedError(TradeloopError):
    """The caller is known but may not do this: a role or scope too low, or another user's
    resource (the API answers 403, or 404 where saying it exists would leak it)."""

    exit_code = 12


class LimitReachedError(TradeloopError):
    """A user already holds as many of something as one may (queued jobs, ...): finish or
    remove one first (the API answers 409)."""

    exit_code = 14


class NotFoundError(TradeloopError, LookupError):
    """A resource asked for by id or name does not exist (or is not the caller's)."""

    exit_code = 13


class NotConfiguredError(ConfigError):
    """The server lacks a setting a request needs (e.g. ``TRADELOOP_ENCRYPTION_KEY`` to store
    exchange credentials): the operator's to fix, not the caller's (the API answers 503)."""

    exit_code = 2


def config_error(
    exc: Exception,
    *,
    what: str,
    model: type | None = None,
    names: dict[str, str] | None = None,
) -> ConfigError:
    """One :class:`ConfigError` from a pydantic ``ValidationError``: each problem as
    ``field=value: what is wrong (what the field means)``; an unknown field gets a
    did-you-mean from ``model``'s fields. ``names`` shows fields under the names the user
    typed (``{"stop_loss": "--stop-loss"}``); ``what`` says whose options these are."""
    import difflib

    fields: dict = getattr(model, "model_fields", {}) or {}
    names = names or {}
    parts = []
    for err in exc.errors():  # type: ignore[attr-defined]
        loc = ".".join(str(p) for p in err["loc"])
        shown = names.get(loc, loc)
        value = err.get("input")
        if not loc:  # a cross-field check: its message names the fields and the fix
            parts.append(str(err["msg"]).removeprefix("Value error, "))
        elif err["type"] == "extra_forbidden":
            near = difflib.get_close_matches(loc, list(fields), n=1)
            parts.append(
                f"{shown}={value!r} is unknown"
                + (f"; did you mean {near[0]!r}?" if near else "")
                + (f" (it takes {', '.join(names.get(f, f) for f in fields)})" if fields else "")
            )
        else:
            info = fields.get(err["loc"][0])
            meaning = getattr(info, "description", None)
            shown_value = "(missing)" if err["type"] == "missing" else repr(value)
            msg = str(err["msg"]).removeprefix("Value error, ")
            parts.append(
                f"{shown}={shown_value}: {msg[:1].lower()}{msg[1:]}"
                + (f" ({err['loc'][0]}: {meaning})" if meaning else "")
            )
    return ConfigError(f"{what}: " + "; ".join(parts))
