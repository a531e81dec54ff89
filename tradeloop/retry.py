"""Retry with exponential backoff and jitter, for idempotent requests only.

Market-data reads (fetch_ohlcv, load_markets) are safe to repeat. Orders are not: the
order path never uses this helper; a create that times out is resolved by querying.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import ccxt

from tradeloop.errors import ConfigError, RetryExhaustedError

log = logging.getLogger(__name__)
T = TypeVar("T")

#: ccxt errors worth another try: the request may succeed later unchanged. ccxt's
#: OperationFailed is the parent of NetworkError, RequestTimeout, RateLimitExceeded,
#: DDoSProtection, ExchangeNotAvailable and of exchange codes such as Binance's -1001
#: ("internal error, please try again"). ExchangeError (bad symbol, bad request,
#: authentication, insufficient funds) is the user's to fix and is never retried.
RETRYABLE_CCXT_ERRORS: tuple[type[BaseException], ...] = (ccxt.OperationFailed,)


def backoff_delay(attempt: int, *, base: float, cap: float, rng: random.Random) -> float:
    """Exponential backoff with full jitter: uniform in [0, min(cap, base * 2**attempt)] (for
    reconnects and pings, where many clients must not retry in step)."""
    return rng.uniform(0.0, min(cap, base * 2.0**attempt))


@dataclass(frozen=True, kw_only=True, slots=True)
class RetryPolicy:
    """How often and how patiently to repeat an idempotent request."""

    max_attempts: int = 6
    base_delay_s: float = 0.5
    max_delay_s: float = 30.0
    rate_limit_delay_s: float = 5.0  # first wait after HTTP 429 / 418
    jitter: float = 0.25  # +/- fraction of each delay

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ConfigError(f"max_attempts={self.max_attempts} must be at least 1")
        if self.base_delay_s < 0 or self.max_delay_s < self.base_delay_s:
            raise ConfigError(
                f"base_delay_s={self.base_delay_s}, max_delay_s={self.max_delay_s}: "
                "need 0 <= base_delay_s <= max_delay_s"
            )
        if not 0 <= self.jitter < 1:
            raise ConfigError(f"jitter={self.jitter} must be in [0, 1)")

    def delay(self, attempt: int, error: BaseException, rng: random.Random) -> float:
        base = self.rate_limit_delay_s if isinstance(error, ccxt.DDoSProtection) else self.base_delay_s
        raw = min(self.max_delay_s, base * (2 ** (attempt - 1)))
        return max(0.0, raw * (1 + rng.uniform(-self.jitter, self.jitter)))


def call_with_retry(
    fn: Callable[[], T],
    *,
    policy: RetryPolicy,
    what: str,
    sleep: Callable[[float], None] = time.sleep,
    rng: random.Random | None = None,
) -> T:
    """Call ``fn``; on a retryable ccxt error wait and try again, up to the policy's limit.

    Non-retryable errors (bad symbol, authentication, bad request) propagate at once.
    """
    rng = rng or random.Random()
    for attempt in range(1, policy.max_attempts + 1):
        try:
            return fn()
        except RETRYABLE_CCXT_ERRORS as exc:
            if attempt == policy.max_attempts:
                raise RetryExhaustedError(
                    f"{what} failed {attempt} times, last with {type(exc).__name__}: {exc}. "
                    "Check the network or the exchange status, then run again: "
                    "stored data is intact and the run resumes where it stopped."
                ) from exc
            wait = policy.delay(attempt, exc, rng)
            log.warning(
                "%s: %s (attempt %d/%d), retrying in %.2fs",
                what,
                type(exc).__name__,
                attempt,
                policy.max_attempts,
                wait,
            )
            sleep(wait)
    raise AssertionError("unreachable")
