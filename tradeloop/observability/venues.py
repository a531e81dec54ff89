"""Exchange health per venue: what every ccxt call told us, a score in 0..1, and the
``tradeloop_venue_*`` metrics.

The ccxt clients built by ``tradeloop.data.exchanges.make_exchange`` report every REST call
(its venue, endpoint, time and error class) and every WebSocket watch (data received, or a
failure the caller reconnects after) to a :class:`VenueHealth`; the venue monitor
(``live.venue_monitor``) adds the clock skew against the venue's server time (ccxt
``fetch_time``) and the venue's own status (``fetch_status``, where ccxt has it).

Rules:

1. **A fixed window.** Figures cover the last ``window_calls`` REST calls that are at most
   ``window_s`` old, and the WebSocket reconnects of the last ``window_s``: nothing grows in
   a 24/7 process, and a venue that recovers sees its old failures age out.
2. **Error classes** (checked in this order, as ccxt's hierarchy nests them):
   ``rate_limit`` (``ccxt.RateLimitExceeded`` and its parent ``ccxt.DDoSProtection``, which
   ccxt raises for HTTP 429 and 418 before it reads the body), ``timeout`` (``ccxt.RequestTimeout``),
   ``network`` (any other ``ccxt.NetworkError``: lost connections, 5xx, maintenance) and
   ``exchange`` (``ccxt.ExchangeError``: the venue refused this request: a bad symbol, no
   funds). Other ccxt errors (a response ccxt cannot parse) count as ``network``.
3. **The score** is the product of six factors, each in 0..1, so any one of them at 0 (every
   call failing, a clock 5 s off, the venue in maintenance) makes the venue unusable::

       availability = 1 - (rate_limit + timeout + network) / calls       (1 with no calls)
       latency      = ramp(p95 of the calls' seconds, latency_good_s, latency_bad_s)
       freshness    = ramp(seconds since the last WebSocket data, stale_good_s, stale_bad_s)
       clock        = ramp(|server time - local time|, skew_good_s, skew_bad_s)
       stability    = 1 - min(reconnects in the window / reconnects_bad, 1)
       status       = 0 when the venue's status endpoint says anything but "ok", else 1

   where ``ramp(x, good, bad)`` is 1 up to ``good``, 0 from ``bad`` on, linear between. A
   figure never measured (no WebSocket, no probe yet) leaves its factor at 1. ``exchange``
   errors are counted but do not lower the score: a refused order says nothing about the
   venue. A venue never seen scores 1.
4. **Metrics** (only from a :class:`VenueHealth` made with ``export=True``: the process's
   :func:`venue_health`): ``tradeloop_venue_request_duration_seconds{venue,endpoint}``,
   ``tradeloop_venue_requests_total{venue,endpoint,outcome}`` (``ok`` or an error class),
   ``tradeloop_venue_ws_reconnects_total{venue}``,
   ``tradeloop_venue_last_message_timestamp_seconds{venue}`` (wall time: staleness is
   ``time() - it`` in PromQL), ``tradeloop_venue_clock_skew_seconds{venue}`` (server minus
   local), ``tradeloop_venue_status_up{venue}`` (1: ``ok``) and
   ``tradeloop_venue_health_score{venue}``, computed at each scrape.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import ccxt
from prometheus_client import Counter, Gauge, Histogram
from pydantic import BaseModel, ConfigDict, Field, model_validator

from tradeloop.observability.sampled import Sampled

ErrorKind = Literal["rate_limit", "timeout", "network", "exchange"]
ERROR_KINDS: tuple[ErrorKind, ...] = ("rate_limit", "timeout", "network", "exchange")
FAILURES: tuple[ErrorKind, ...] = ("rate_limit", "timeout", "network")  # what lowers availability

REQUEST_LATENCY = Histogram(
    "tradeloop_venue_request_duration_seconds", "A REST call to a venue, from send to parsed reply or error",
    ["venue", "endpoint"], buckets=(0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)  # fmt: skip
REQUESTS = Counter("tradeloop_venue_requests", "REST calls to a venue by outcome", ["venue", "endpoint", "outcome"])
WS_RECONNECTS = Counter("tradeloop_venue_ws_reconnects", "WebSocket watches that failed (the caller reconnects)",
                        ["venue"])  # fmt: skip
LAST_MESSAGE = Gauge("tradeloop_venue_last_message_timestamp_seconds", "Wall time of the venue's last WebSocket data",
                     ["venue"])  # fmt: skip
CLOCK_SKEW = Gauge("tradeloop_venue_clock_skew_seconds", "The venue's server time minus ours", ["venue"])
STATUS_UP = Gauge("tradeloop_venue_status_up", "1 while the venue's status endpoint says ok", ["venue"])
SCORE = Sampled("tradeloop_venue_health_score", "The venue's health score, 0..1 (tradeloop.observability.venues)",
                ("venue",))  # fmt: skip


class HealthConfig(BaseModel):
    """The window and the bounds of the score's factors (module rules 1 and 3)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    window_calls: int = Field(default=100, ge=1, description="REST calls the figures cover at most")
    window_s: float = Field(default=300.0, gt=0, description="age beyond which a call or reconnect leaves the window")
    latency_good_s: float = Field(default=0.5, gt=0)
    latency_bad_s: float = Field(default=5.0, gt=0)
    stale_good_s: float = Field(default=60.0, gt=0)
    stale_bad_s: float = Field(default=300.0, gt=0)
    skew_good_s: float = Field(default=1.0, gt=0)
    skew_bad_s: float = Field(default=5.0, gt=0, description="Binance's default recvWindow: signed calls fail beyond")
    reconnects_bad: int = Field(default=10, ge=1, description="reconnects in the window that make stability 0")

    @model_validator(mode="after")
    def _bounds(self) -> HealthConfig:
        for name in ("latency", "stale", "skew"):
            good, bad = getattr(self, f"{name}_good_s"), getattr(self, f"{name}_bad_s")
            if bad <= good:
                raise ValueError(f"{name}_bad_s={bad} must be above {name}_good_s={good}; raise {name}_bad_s")
        return self


def classify(error: BaseException) -> ErrorKind:
    """A ccxt error's class (module rule 2)."""
    if isinstance(error, ccxt.DDoSProtection):  # RateLimitExceeded is one
        return "rate_limit"
    if isinstance(error, ccxt.RequestTimeout):
        return "timeout"
    if isinstance(error, ccxt.ExchangeError) and not isinstance(error, ccxt.NetworkError):
        return "exchange"
    return "network"


def ramp(x: float, good: float, bad: float) -> float:
    """1 up to ``good``, 0 from ``bad`` on, linear between."""
    return 1.0 if x <= good else 0.0 if x >= bad else (bad - x) / (bad - good)


def percentile(values: list[float], q: float) -> float | None:
    """The ``q`` quantile (0..1) by the nearest rank; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered) + 0.5) - 1))]


@dataclass(frozen=True, kw_only=True, slots=True)
class VenueSnapshot:
    """One venue's figures over the window, and its score (module rule 3)."""

    venue: str
    at: float  # wall time (epoch seconds) it was taken
    score: float
    factors: dict[str, float]
    calls: int
    errors: dict[str, int]  # error class -> calls in the window
    error_rate: float  # failures (rate_limit, timeout, network) / calls
    timeout_rate: float
    rate_limit_hits: int
    p50_s: float | None
    p95_s: float | None
    p99_s: float | None
    ws_reconnects: int
    stale_s: float | None  # since the last WebSocket data; None: no WebSocket data yet
    clock_skew_s: float | None
    status: str | None  # the venue's status endpoint ("ok", "maintenance", ...); None: not asked

    def figures(self) -> dict:
        """Everything but the venue, score and time, as JSON-ready values (what is stored)."""
        return {
            "factors": self.factors, "calls": self.calls, "errors": self.errors, "error_rate": self.error_rate,
            "timeout_rate": self.timeout_rate, "rate_limit_hits": self.rate_limit_hits, "p50_s": self.p50_s,
            "p95_s": self.p95_s, "p99_s": self.p99_s, "ws_reconnects": self.ws_reconnects, "stale_s": self.stale_s,
            "clock_skew_s": self.clock_skew_s, "status": self.status,
        }  # fmt: skip


@dataclass
class _Venue:
    calls: deque = field(default_factory=deque)  # (wall time, seconds, error class or None)
    reconnects: deque = field(default_factory=deque)  # wall times
    last_message: float | None = None
    clock_skew_s: float | None = None
    status: str | None = None


class VenueHealth:
    """Per-venue health figures and scores (module rules). Thread-safe; cheap to construct."""

    def __init__(self, *, config: HealthConfig | None = None, clock: Callable[[], float] = time.time, export=False):
        self.config = config or HealthConfig()
        self.clock, self.export = clock, export
        self._venues: dict[str, _Venue] = {}
        self._lock = threading.Lock()
        if export:
            SCORE.track("venue_health", self._scores, owner=self)

    def _venue(self, venue: str) -> _Venue:
        state = self._venues.get(venue)
        if state is None:
            state = self._venues[venue] = _Venue(calls=deque(maxlen=self.config.window_calls))
            if self.export:
                WS_RECONNECTS.labels(venue)
        return state

    def record_call(self, venue: str, *, endpoint: str, seconds: float, error: BaseException | None = None) -> None:
        """A REST call that took ``seconds`` and raised ``error`` (None: answered)."""
        kind = None if error is None else classify(error)
        with self._lock:
            self._venue(venue).calls.append((self.clock(), seconds, kind))
        if self.export:
            REQUEST_LATENCY.labels(venue, endpoint).observe(seconds)
            REQUESTS.labels(venue, endpoint, kind or "ok").inc()

    def record_message(self, venue: str) -> None:
        """WebSocket data arrived from ``venue``."""
        now = self.clock()
        with self._lock:
            self._venue(venue).last_message = now
        if self.export:
            LAST_MESSAGE.labels(venue).set(now)

    def record_reconnect(self, venue: str) -> None:
        """A WebSocket watch failed; its caller reconnects."""
        with self._lock:
            state = self._venue(venue)
            state.reconnects.append(self.clock())
            while len(state.reconnects) > 10 * self.config.reconnects_bad:
                state.reconnects.popleft()
        if self.export:
            WS_RECONNECTS.labels(venue).inc()

    def record_clock_skew(self, venue: str, skew_s: float) -> None:
        """The venue's server time minus ours (seconds)."""
        with self._lock:
            self._venue(venue).clock_skew_s = skew_s
        if self.export:
            CLOCK_SKEW.labels(venue).set(skew_s)

    def record_status(self, venue: str, status: str | None) -> None:
        """What the venue's status endpoint says (ccxt: ``ok``, ``maintenance``, ``shutdown``, ``error``)."""
        with self._lock:
            self._venue(venue).status = status
        if self.export and status is not None:
            STATUS_UP.labels(venue).set(1.0 if status == "ok" else 0.0)

    def venues(self) -> list[str]:
        with self._lock:
            return sorted(self._venues)

    def score(self, venue: str) -> float:
        """The venue's health score in 0..1 (module rule 3); 1 for a venue never seen."""
        return self.snapshot(venue).score

    def snapshots(self) -> list[VenueSnapshot]:
        return [self.snapshot(v) for v in self.venues()]

    def snapshot(self, venue: str) -> VenueSnapshot:
        cfg, now = self.config, self.clock()
        with self._lock:
            state = self._venues.get(venue) or _Venue()
            calls = [c for c in state.calls if now - c[0] <= cfg.window_s]
            reconnects = sum(1 for t in state.reconnects if now - t <= cfg.window_s)
            last_message, skew, status = state.last_message, state.clock_skew_s, state.status
        errors: dict[str, int] = {k: sum(1 for c in calls if c[2] == k) for k in ERROR_KINDS}
        failed = sum(errors[k] for k in FAILURES)
        timed = [c[1] for c in calls if c[2] in (None, "timeout", "exchange")]  # replies (and time-outs) only
        p50, p95, p99 = (percentile(timed, q) for q in (0.5, 0.95, 0.99))
        stale = None if last_message is None else max(0.0, now - last_message)
        factors = {
            "availability": 1.0 - failed / len(calls) if calls else 1.0,
            "latency": ramp(p95, cfg.latency_good_s, cfg.latency_bad_s) if p95 is not None else 1.0,
            "freshness": ramp(stale, cfg.stale_good_s, cfg.stale_bad_s) if stale is not None else 1.0,
            "clock": ramp(abs(skew), cfg.skew_good_s, cfg.skew_bad_s) if skew is not None else 1.0,
            "stability": 1.0 - min(reconnects / cfg.reconnects_bad, 1.0),
            "status": 0.0 if status not in (None, "ok") else 1.0,
        }
        score = 1.0
        for value in factors.values():
            score *= value
        return VenueSnapshot(
            venue=venue, at=now, score=round(score, 6), factors=factors, calls=len(calls), errors=errors,
            error_rate=failed / len(calls) if calls else 0.0,
            timeout_rate=errors["timeout"] / len(calls) if calls else 0.0, rate_limit_hits=errors["rate_limit"],
            p50_s=p50, p95_s=p95, p99_s=p99, ws_reconnects=reconnects, stale_s=stale, clock_skew_s=skew,
            status=status,
        )  # fmt: skip

    def _scores(self) -> list[tuple[tuple[str, ...], float]]:
        return [((s.venue,), s.score) for s in self.snapshots()]


_DEFAULT: VenueHealth | None = None
_DEFAULT_LOCK = threading.Lock()


def venue_health() -> VenueHealth:
    """The process's :class:`VenueHealth`, which exports the metrics (made at the first call)."""
    global _DEFAULT
    with _DEFAULT_LOCK:
        if _DEFAULT is None:
            _DEFAULT = VenueHealth(export=True)
        return _DEFAULT
